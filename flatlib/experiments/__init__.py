"""One module per notebook group: its Params (registered by notebook name), run plans and analyses.

Importing this package registers every notebook's parameters in ``flatlib.params.NOTEBOOKS``.
"""
from flatlib.experiments import baselines, ff, fim, gedanken, pof, study  # noqa: F401

"""One module per notebook group: its Params (registered by notebook name), run plans and analyses.

Importing this package registers every notebook's parameters in ``flatlib.params.NOTEBOOKS``.
"""
from flatlib.experiments import baselines, ff, fim, gedanken, study  # noqa: F401
from flatlib.experiments import pof_common, pof_images, pof_toy  # noqa: F401  (PoF: one module per notebook)

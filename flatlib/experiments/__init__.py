"""One module per notebook group: its Params (registered by notebook name), run plans and analyses.

Importing this package registers every notebook's parameters in ``flatlib.params.NOTEBOOKS``.
"""
from flatlib.experiments import baselines, fim, pof, study  # noqa: F401
from flatlib.experiments import ff_adam, ff_gedanken, ff_weight_decay  # noqa: F401  (FF: one module per notebook group)

"""One module per notebook group: its Params (registered by notebook name), run plans and analyses.

Importing this package registers every notebook's parameters in ``flatlib.params.NOTEBOOKS``.
"""
from flatlib.experiments import baselines, ff, gedanken, study  # noqa: F401
from flatlib.experiments import fim_imagenet, fim_regularizer, fim_scenarios  # noqa: F401
from flatlib.experiments import pof_common, pof_images, pof_toy  # noqa: F401

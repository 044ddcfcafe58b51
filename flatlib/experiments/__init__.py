"""One module per notebook group: its Params (registered by notebook name), run plans and analyses.

Importing this package registers every notebook's parameters in ``flatlib.params.NOTEBOOKS``.
"""
from flatlib.experiments import baselines, ff, fim_imagenet, fim_regularizer, fim_scenarios, gedanken, pof, study  # noqa: F401,E501

"""One module per notebook group: its Params (registered by notebook name), run plans and analyses.

Importing this package registers every notebook's parameters in ``flatlib.params.NOTEBOOKS``.
"""
import importlib

_MODULES = ["baselines", "gedanken", "ff", "fim", "pof", "study"]

for _m in _MODULES:
    try:
        importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as _err:  # chapters not yet written
        if _err.name != f"{__name__}.{_m}":
            raise

"""Old name of `flatlib.experiments.ff_gedanken` (kept for ``tests/test_faults.py``; import ff_gedanken)."""
from flatlib.experiments.ff_gedanken import *  # noqa: F401,F403
from flatlib.experiments.ff_gedanken import GedankenParams, final_table, run, trajectory  # noqa: F401

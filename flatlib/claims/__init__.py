"""Every verdict of the book, in one place: gates, paired statistics, rules and the status page.

An experiment (``flatlib.experiments``) returns numbers; a notebook hands them to its claim
function here, which checks the gates (trained / acted / resolvable), applies the rule whose
sentence is generated from its thresholds, and stores the verdict in the results store:

- :mod:`flatlib.claims.verdict` — ``Gate``, ``Claim``, ``judge`` (a failed gate ⇒ ``inconclusive``);
- :mod:`flatlib.claims.stats` — paired t / sign tests, McNemar, minimum detectable effects (scipy.stats);
- :mod:`flatlib.claims.rules` — decision rules and gates as frozen dataclasses of thresholds;
- :mod:`flatlib.claims.ff`, :mod:`~flatlib.claims.fim`, :mod:`~flatlib.claims.pof` — one function per notebook;
- :mod:`flatlib.claims.study` — the study population's "trained" gate;
- :mod:`flatlib.claims.status` — the reproduction-status page, read back from the store.
"""
from flatlib.claims.verdict import GATE_NAMES, VERDICTS, Claim, Claims, Gate, judge, not_run

__all__ = ["GATE_NAMES", "VERDICTS", "Claim", "Claims", "Gate", "judge", "not_run"]

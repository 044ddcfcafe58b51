"""The cross-paper study: its population gate (only models that trained are measured and ranked) and the
three papers' claims checked on the whole population (Kendall τ intervals per intervention)."""
from __future__ import annotations

import pandas as pd

from flatlib.claims.ff import FIT_BY_CLAIM
from flatlib.claims.rules import Fit
from flatlib.measures import MEASURES

DEFAULT_FIT = Fit(95.0)
# models whose experiment sets a lower fit (softmax regression: FF-F1; All-CNN-C: FF-F3)
FIT_BY_MODEL = {"logreg": FIT_BY_CLAIM["FF-F1"], "allcnnc": FIT_BY_CLAIM["FF-F3"]}


def trained(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, excluded): a model is kept when its train accuracy reaches its experiment's "trained" gate
    (≥ 95 %, or the lower fit FF-F1/F3 set for softmax regression and All-CNN-C); ``excluded`` says why."""
    need = frame["model"].map(lambda m: FIT_BY_MODEL.get(m, DEFAULT_FIT).minimum)
    acc = 100 - frame["train_error"]
    ok = acc >= need
    excluded = frame.loc[~ok, ["key", "dataset", "model"]].assign(
        train_accuracy=acc[~ok].round(1), required=need[~ok],
        reason=[f"train accuracy {a:.1f} % < {n:g} %" for a, n in zip(acc[~ok], need[~ok])])
    return frame[ok].reset_index(drop=True), excluded.reset_index(drop=True)


def _cell(corr: pd.DataFrame, measure: str, field: str, target: str = "test_error") -> pd.DataFrame:
    """The rows of ``measure`` for every intervention that changes ``field`` (alone or jointly)."""
    changes = corr["intervention"].map(lambda s: field in s.split("+"))
    return corr[(corr["measure"] == measure) & changes & (corr["target"] == target)]


def paper_claims(frame: pd.DataFrame, corr: pd.DataFrame) -> pd.DataFrame:
    """The three papers' claims checked against the population (raw τ with test error, per dataset).

    FF: under weight decay, and under a change of optimizer (SGD vs Adam, FF Figs. 6-7), the Hessian
    measures rank the models the wrong way (τ < 0 with test error).
    FIM: γ̂ tracks test error (τ > 0) under the confusion set, augmentation and batch size.
    PoF: a PoF run has a smaller classifier λ1 and a lower test error than the run it started from.
    A verdict needs the interval to exclude 0; "not enough models" where the population lacks the intervention.
    """
    rows = []

    def add(paper: str, claim: str, measure: str, field: str, want: int) -> None:
        c = _cell(corr, measure, field)
        if c.empty:
            rows.append({"paper": paper, "claim": claim, "dataset": "—", "evidence": "—", "verdict": "not enough models"})
        for r in c.itertuples():
            ok = r.lo > 0 if want > 0 else r.hi < 0
            bad = r.hi < 0 if want > 0 else r.lo > 0
            rows.append({"paper": paper, "claim": claim + (f" [{r.intervention}]" if r.intervention != field else ""),
                         "dataset": r.dataset,
                         "evidence": f"τ = {r.tau:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}] over {r.groups:.0f} groups",
                         "verdict": "held" if ok else "did not hold" if bad else "inconclusive"})

    for field in ("weight_decay", "optimizer"):
        for m in ("lambda1", "trace", "frobenius"):
            add("FF", f"{MEASURES[m][0]} ranks {field} the wrong way", m, field, -1)
    for scenario, field in (("S1", "confusion"), ("S2", "augment"), ("S3", "batch_size")):
        add("FIM", f"γ̂ tracks test error under {field} ({scenario})", "log_det", field, +1)
    rows.extend(pof_pairs_claim(frame))
    return pd.DataFrame(rows, columns=["paper", "claim", "dataset", "evidence", "verdict"])


def pof_pairs_claim(frame: pd.DataFrame) -> list[dict[str, str]]:
    """PoF runs against the run they were post-trained from (its final weights): does PoF lower the
    classifier-space λ1 and the test error? Held if both fall for every pair."""
    claim = "PoF lowers the classifier-space Hessian (λ1) and the test error"
    by_key = frame.set_index("key")
    pairs = [(r, by_key.loc[r["parent"]]) for _, r in frame.iterrows()
             if r.get("rule") == "pof" and r.get("parent") in by_key.index]
    if not pairs:
        return [{"paper": "PoF", "claim": claim, "dataset": "—", "evidence": "—", "verdict": "not enough models"}]
    lam = sum(float(a["clf_lambda1"] < b["clf_lambda1"]) for a, b in pairs)
    err = sum(float(a["test_error"] < b["test_error"]) for a, b in pairs)
    n = len(pairs)
    verdict = "held" if lam == err == n else "did not hold" if lam == err == 0 else "partly held"
    return [{"paper": "PoF", "claim": claim, "dataset": ", ".join(sorted({a["dataset"] for a, _ in pairs})),
             "evidence": f"λ1 lower in {lam:.0f}/{n} pairs, test error lower in {err:.0f}/{n}", "verdict": verdict}]

"""Decision rules whose printed sentence is generated from the thresholds they apply.

Each rule is a frozen dataclass: its fields are the thresholds (set from the paper and from
statistics before any outcome is seen), ``text`` renders the sentence shown next to the verdict,
and ``decide``/``gate`` apply exactly those fields. Nothing else states a threshold.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from flatlib.claims.stats import ALPHA, McNemar, PairedTest, mcnemar, paired, shared_test_set_variance
from flatlib.claims.verdict import Gate

# one tolerance for every cost ratio judged against a paper (POF-T2, FIM-TC): 10 % over the paper's ratio
BENCH_TOLERANCE = 1.10


def _num(x: float) -> str:
    return f"{x:.3g}"


# ----------------------------------------------------------------------------------------- gates
@dataclasses.dataclass(frozen=True)
class Fit:
    """The "trained" gate: every arm reaches ``minimum`` of ``what`` (in %) in its worst seed."""

    minimum: float
    what: str = "train accuracy"
    why: str = ""

    def text(self) -> str:
        return f"every arm reaches {self.what} ≥ {self.minimum:g} % in every seed" + (f" ({self.why})" if self.why else "")

    def gate(self, arms: Mapping[str, Sequence[float]], chance: float | None = None) -> Gate:
        worst = {arm: float(np.min(v)) for arm, v in arms.items()}
        low = {a: w for a, w in worst.items() if not w >= self.minimum}
        chance_txt = f"; chance {chance:.3g} %" if chance is not None else ""
        if low:
            return Gate(False, "; ".join(f"{a} arm did not train ({self.what} {w:.1f} %, required ≥ {self.minimum:g} %"
                                         f"{chance_txt})" for a, w in low.items()))
        return Gate(True, f"{self.what} ≥ {self.minimum:g} % in every arm and seed (worst: "
                          + ", ".join(f"{a} {w:.1f} %" for a, w in worst.items()) + ")")


@dataclasses.dataclass(frozen=True)
class Moved:
    """The "acted" gate: the treatment changed ``what`` by a relative amount ≥ ``floor`` in every seed."""

    floor: float
    what: str

    def text(self) -> str:
        return f"the treatment changes {self.what} by ≥ {self.floor:.0e} (relative) in every seed"

    def gate(self, relative_changes: Sequence[float], extra: str = "") -> Gate:
        ch = np.abs(np.asarray(relative_changes, dtype=float))
        shown = ", ".join(f"{c:.1e}" for c in ch)
        ok = bool(len(ch) and np.all(ch >= self.floor))
        head = f"relative change of {self.what} per seed {shown} ({'≥' if ok else 'not all ≥'} {self.floor:.0e})"
        return Gate(ok, head + (f"; {extra}" if extra else ""))


@dataclasses.dataclass(frozen=True)
class Detectable:
    """The "resolvable" gate: the paper's effect is at least the minimum detectable effect (MDE).

    With ``or_significant`` the gate also passes when the paired test has already resolved the sign
    (one-sided p < α in either direction): power bounds what a test that finds *nothing* can rule out,
    and a test that found the sign at p < α is not such a test.
    """

    unit: str = "points"
    or_significant: bool = False
    alpha: float = ALPHA

    def text(self) -> str:
        return ("the paper's effect is at least the minimum detectable effect at α = 0.05 and 80 % power "
                "(binomial error of the test set and the seed spread)"
                + (f", or the paired test resolved the sign (one-sided p < {self.alpha:g} either way)"
                   if self.or_significant else ""))

    def gate(self, mde: float, paper_effect: float, design: str, test: PairedTest | None = None) -> Gate:
        powered = bool(np.isfinite(mde) and abs(paper_effect) >= mde)
        detail = (f"minimum detectable effect {_num(mde)} {self.unit} ({design}) "
                  f"{'≤' if powered else '>'} the paper's {_num(abs(paper_effect))} {self.unit}")
        p = test.t_pvalue if test is not None else math.nan
        significant = self.or_significant and np.isfinite(p) and min(p, 1 - p) < self.alpha
        if significant and not powered:
            detail += f"; the paired test resolved the sign (one-sided p = {min(p, 1 - p):.2g} < {self.alpha:g})"
        return Gate(powered or significant, detail)


# ---------------------------------------------------------------------------------------- rules
@dataclasses.dataclass(frozen=True)
class PairedDirection:
    """A paired per-seed comparison of ``quantity`` between two arms that share seeds.

    held: the claimed sign in every seed and a one-sided paired t-test p < ``alpha``;
    partly held: the claimed sign on average only; did not hold: the opposite sign on average.
    ``log`` compares log values (ratios), for positive scale quantities such as λ1.
    """

    quantity: str
    treatment: str
    control: str
    direction: int = +1
    alpha: float = ALPHA
    log: bool = False

    def text(self) -> str:
        word = "higher" if self.direction > 0 else "lower"
        scale = "log " if self.log else ""
        return (f"{self.quantity} is {word} with {self.treatment} than with {self.control}: held if so in every seed "
                f"and a one-sided paired t-test on {scale}values gives p < {self.alpha:g}; partly held if {word} on "
                f"average only; did not hold if not {word} on average")

    def test(self, treatment: Sequence[float], control: Sequence[float]) -> PairedTest:
        f = np.log if self.log else np.asarray
        return paired(f(np.asarray(treatment, dtype=float)), f(np.asarray(control, dtype=float)), self.direction)

    def decide(self, treatment: Sequence[float], control: Sequence[float]) -> tuple[str, PairedTest]:
        t = self.test(treatment, control)
        signed = self.direction * t.mean
        if t.agree == t.n and t.n >= 2 and t.t_pvalue < self.alpha:
            return "held", t
        return ("partly held" if signed > 0 else "did not hold"), t


@dataclasses.dataclass(frozen=True)
class Excess:
    """The test-error excess treatment − control in points, paired by seed and by test image."""

    diffs: tuple[float, ...]    # per seed
    only_treatment: tuple[int, ...]  # per seed: images only the treatment gets right
    only_control: tuple[int, ...]
    n_test: int
    se: float                   # standard error of the seed mean (`stats.shared_test_set_variance`)
    lower: float                # one-sided (1 − α) lower and upper bounds of the mean
    upper: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.diffs))


@dataclasses.dataclass(frozen=True)
class NonInferior:
    """"Generalises no worse": the treatment's test error exceeds the control's by less than ``margin``.

    The mean error excess over seeds (treatment − control, points), both arms scored on the same test
    images, has standard error √(`stats.shared_test_set_variance`): the image variance of the
    seed-averaged per-image difference plus the seed spread. Held if its one-sided (1 − α) upper bound
    is below ``margin``; did not hold if its one-sided (1 − α) lower bound is above ``margin`` (worse
    beyond the margin); an interval across the margin decides neither, and the design's *resolvable*
    gate fails (`gate`).
    """

    margin: float
    treatment: str
    control: str
    alpha: float = ALPHA

    def text(self) -> str:
        c = f"one-sided {1 - self.alpha:.0%}"
        return (f"{self.treatment} generalises no worse than {self.control}: held if the {c} upper bound of its "
                f"test-error excess (paired by seed and by test image: image variance of the seed-averaged "
                f"difference plus the seed spread) is below {self.margin:g} points; did not hold if the {c} lower "
                f"bound is above {self.margin:g} points")

    def excess(self, correct_treatment: Sequence[Sequence[bool]], correct_control: Sequence[Sequence[bool]]) -> Excess:
        """The excess from per-seed correctness vectors on the shared test set (seed order matches)."""
        from scipy import stats as st

        tests = [mcnemar(t, c) for t, c in zip(correct_treatment, correct_control, strict=True)]
        n = len(correct_treatment[0])
        diffs = [100 * (m.only_b - m.only_a) / n for m in tests]  # error(T) − error(C) = (only C − only T right)/n
        se = 100 * math.sqrt(shared_test_set_variance(correct_treatment, correct_control))
        z = float(st.norm.ppf(1 - self.alpha))
        mean = float(np.mean(diffs))
        return Excess(tuple(diffs), tuple(m.only_a for m in tests), tuple(m.only_b for m in tests), n, se,
                      mean - z * se, mean + z * se)

    def decide(self, ex: Excess) -> str | None:
        """held, did not hold, or None when the interval straddles the margin."""
        return "held" if ex.upper < self.margin else "did not hold" if ex.lower > self.margin else None

    def gate(self, ex: Excess) -> Gate:
        """Resolvable when the interval lies on one side of the margin; otherwise the detail says how far off."""
        from scipy import stats as st

        verdict = self.decide(ex)
        head = (f"test-error excess {ex.mean:+.2f} points, one-sided {1 - self.alpha:.0%} bounds [{ex.lower:+.2f}, "
                f"{ex.upper:+.2f}] (SE {ex.se:.2f}; {len(ex.diffs)} seeds, {ex.n_test} shared test images)")
        if verdict is not None:
            return Gate(True, head + f" {'below' if verdict == 'held' else 'above'} the margin {self.margin:g} points")
        z = float(st.norm.ppf(1 - self.alpha))
        q = float(np.mean(np.add(ex.only_treatment, ex.only_control))) / ex.n_test  # discordant fraction
        images = math.ceil(q * (z * 100 / max(abs(ex.mean - self.margin), 1e-9)) ** 2)
        return Gate(False, head + f" straddle the margin {self.margin:g} points; with this discordance "
                                  f"({q:.1%} of images) the image noise alone allows a decision only with ≥ {images} "
                                  f"test images (more seeds shrink the seed part)")


@dataclasses.dataclass(frozen=True)
class RatioBands:
    """A positive ratio judged against bands: held if ≥ ``held_at`` (or ≤ when ``below``), did not hold
    if on the wrong side of ``fails_at``, partly held in between."""

    quantity: str
    held_at: float
    fails_at: float
    below: bool = False
    why: str = ""

    def text(self) -> str:
        op, bad = ("≤", ">") if self.below else ("≥", "≤")
        return (f"held if {self.quantity} {op} {self.held_at:g}; did not hold if {self.quantity} {bad} {self.fails_at:g}; "
                f"partly held in between" + (f" ({self.why})" if self.why else ""))

    def decide(self, ratio: float) -> str:
        if self.below:
            return "held" if ratio <= self.held_at else "did not hold" if ratio > self.fails_at else "partly held"
        return "held" if ratio >= self.held_at else "did not hold" if ratio <= self.fails_at else "partly held"


def combine(*verdicts: str) -> str:
    """held if every part held, did not hold if every part did not hold, partly held otherwise."""
    if all(v == "held" for v in verdicts):
        return "held"
    if all(v == "did not hold" for v in verdicts):
        return "did not hold"
    return "partly held"


@dataclasses.dataclass(frozen=True)
class Fell:
    """An "acted" gate with a direction: the treatment lowered ``what`` by a relative amount ≥ ``floor``
    in every seed (relative change = (treatment − control) / control ≤ −floor)."""

    floor: float
    what: str

    def text(self) -> str:
        return f"the treatment lowers {self.what} by ≥ {self.floor:.0e} (relative) in every seed"

    def gate(self, relative_changes: Sequence[float]) -> Gate:
        ch = np.asarray(relative_changes, dtype=float)
        ok = bool(len(ch) and np.all(ch <= -self.floor))
        shown = ", ".join(f"{c:+.1e}" for c in ch)
        return Gate(ok, f"relative change of {self.what} per seed {shown} ({'all' if ok else 'not all'} ≤ "
                        f"−{self.floor:.0e})")




@dataclasses.dataclass(frozen=True)
class NoFurtherGain:
    """"A further treatment gives no further gain" on shared test points (McNemar's exact test, pooled over seeds).

    did not hold: the treatment is right on significantly more of the discordant points (p < ``alpha``);
    partly held: significantly fewer (a worsening, reported as such); held: neither.
    """

    treatment: str
    control: str
    alpha: float = ALPHA

    def text(self) -> str:
        return (f"no further gain from {self.treatment} over {self.control}: held unless McNemar's exact test on the "
                f"test points of all seeds pooled finds {self.treatment} better with p < {self.alpha:g} (did not hold); "
                f"a significant worsening (p < {self.alpha:g} the other way) is partly held and reported as a worsening")

    def decide(self, only_treatment: int, only_control: int) -> tuple[str, McNemar]:
        m = mcnemar_counts(only_treatment, only_control)
        if m.pvalue < self.alpha and only_treatment > only_control:
            return "did not hold", m
        if m.pvalue < self.alpha and only_control > only_treatment:
            return "partly held", m
        return "held", m


def mcnemar_counts(only_a: int, only_b: int) -> McNemar:
    """McNemar's exact test from the discordant counts alone (A right and B wrong; the converse)."""
    a = np.r_[np.ones(only_a, bool), np.zeros(only_b, bool)]
    return mcnemar(a, ~a)

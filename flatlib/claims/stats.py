"""Paired statistics and detection limits for the verdicts (scipy.stats does the tests).

Arms that share seeds are compared seed by seed; classifiers evaluated on the same test images
by McNemar's exact test. The minimum detectable effect (MDE) of a difference of two error rates is

    MDE = (z_{1−α/2} + z_{power}) · √( 2 p (1−p) / n  +  s² / k ),

the binomial standard error of a difference of two error rates p on n test images (a shared
test set does not average out over seeds) combined with the seed spread s of the paired
differences over k seeds. With α = 0.05 and power 0.8 the factor is 2.80.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8


def z_factor(alpha: float = ALPHA, power: float = POWER) -> float:
    """z_{1−α/2} + z_{power}: 2.80 for α = 0.05 and 80 % power."""
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def binomial_se(p: float, n: int) -> float:
    """√(p(1−p)/n): the standard error of an error rate ``p`` (a fraction) measured on ``n`` test points.

    >>> round(binomial_se(0.03, 360), 4)
    0.009
    """
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def mde_error_difference(p: float, n_test: int, seed_sd: float = 0.0, n_seeds: int = 1,
                         alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest difference of two error rates (same unit as ``p``, a fraction) this design detects."""
    seed_var = (seed_sd ** 2 / n_seeds) if n_seeds > 0 and np.isfinite(seed_sd) else 0.0
    return z_factor(alpha, power) * math.sqrt(2 * binomial_se(p, n_test) ** 2 + seed_var)


def mde_paired(sd: float, n_seeds: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest mean paired difference a one-sided paired t-test over ``n_seeds`` seeds detects
    (t quantiles with k−1 degrees of freedom); inf with fewer than 2 seeds."""
    if n_seeds < 2:
        return math.inf
    df = n_seeds - 1
    return float((stats.t.ppf(1 - alpha, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n_seeds))


def seeds_needed(sd: float, effect: float, most: int = 10_000, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The fewest seeds whose paired-t minimum detectable effect (`mde_paired`) is at most ``effect``;
    None if even ``most`` seeds do not suffice or the spread is unknown.

    >>> seeds_needed(1.0, 1.0)
    8
    """
    if not (np.isfinite(sd) and effect > 0):
        return None
    return next((n for n in range(2, most + 1) if mde_paired(sd, n, alpha, power) <= abs(effect)), None)


def mde_shared_test_set(only_a: Sequence[int], only_b: Sequence[int], n_test: int, diffs: Sequence[float],
                        alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest mean difference δ of two error rates (a fraction) detectable when the two arms are
    paired by seed and every model is scored on the SAME ``n_test`` images.

    Per seed s the image-level (McNemar) variance of the error difference is
    v_s = ((b_s + c_s)/n − ((b_s − c_s)/n)²)/n, with b_s, c_s the images only arm A / only arm B gets
    right: two models on one test set disagree on few images, so this is far below the 2p(1−p)/n of
    two independent test sets. The images are shared by all seeds, so v_s does not average out over
    seeds; its mean over seeds bounds the image variance of the seed-mean difference (variance of a mean
    ≤ mean of variances). Plus the spread s²/k of the k per-seed differences (``diffs``, fractions):

        δ_obs = (z_{1−α/2} + z_power) · √( mean_s v_s + s²/k ).

    An effect δ needs at least δ·n discordant images, whose McNemar variance is δ(1−δ)/n; so δ is never
    below the root of δ = z·√(δ(1−δ)/n + s²/k) (arms that barely disagree do not make tiny effects
    detectable). Returns max(δ_obs, that root).
    """
    b, c, d = (np.asarray(v, dtype=float) for v in (only_a, only_b, diffs))
    if not (len(b) == len(c) == len(d)) or len(d) == 0:
        raise ValueError(f"need equal, non-empty per-seed arrays; got {len(b)}, {len(c)}, {len(d)}")
    z2 = z_factor(alpha, power) ** 2
    v = ((b + c) / n_test - ((b - c) / n_test) ** 2) / n_test
    seed_var = float(np.var(d, ddof=1)) / len(d) if len(d) > 1 else 0.0
    observed = math.sqrt(z2 * (float(v.mean()) + seed_var))
    q = 1 + z2 / n_test  # δ²·q − δ·z²/n − z²·s²/k = 0
    floor = (z2 / n_test + math.sqrt((z2 / n_test) ** 2 + 4 * q * z2 * seed_var)) / (2 * q)
    return max(observed, floor)


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """Per-seed differences treatment − control, and the two paired tests of their sign."""

    diffs: tuple[float, ...]
    agree: int          # seeds whose difference has the claimed sign
    mean: float
    sd: float
    t_pvalue: float     # one-sided paired t-test in the claimed direction (nan with < 2 seeds or sd = 0)
    sign_pvalue: float  # one-sided exact sign test in the claimed direction

    @property
    def n(self) -> int:
        return len(self.diffs)

    def describe(self, fmt: str = "{:+.3g}") -> str:
        return (f"per seed {', '.join(fmt.format(d) for d in self.diffs)} (claimed sign in {self.agree}/{self.n} "
                f"seeds; paired t-test p = {self.t_pvalue:.2g}, sign test p = {self.sign_pvalue:.2g})")


def paired(treatment: Sequence[float], control: Sequence[float], direction: int = +1) -> PairedTest:
    """Paired comparison of two arms that share seeds; ``direction`` +1 claims treatment > control.

    >>> t = paired([2.0, 3.0, 4.0], [1.0, 1.5, 2.0])
    >>> t.agree, round(t.mean, 3)
    (3, 1.5)
    """
    a, b = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired arms need equal, non-empty seed lists; got {a.shape} and {b.shape}")
    d = a - b
    signed = direction * d
    agree = int((signed > 0).sum())
    nonzero = int((signed != 0).sum())
    sign_p = float(stats.binomtest(agree, nonzero, 0.5, alternative="greater").pvalue) if nonzero else 1.0
    if len(d) >= 2 and float(np.std(d, ddof=1)) > 0:
        t_p = float(stats.ttest_1samp(signed, 0.0, alternative="greater").pvalue)
    else:
        t_p = float("nan")
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else float("nan")
    return PairedTest(tuple(float(x) for x in d), agree, float(d.mean()), sd, t_p, sign_p)


@dataclasses.dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two classifiers on the same test points."""

    only_a: int   # points A gets right and B wrong
    only_b: int
    pvalue: float  # two-sided exact (binomial on the discordant pairs)


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    """Exact McNemar test: under H0 the discordant points split 50/50 between the classifiers.

    >>> mcnemar([True] * 10 + [False] * 0, [False] * 10).only_a
    10
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs predictions on the same test points; got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = float(stats.binomtest(only_a, n, 0.5).pvalue) if n else 1.0
    return McNemar(only_a, only_b, p)


def ratio_spread(ratios: Sequence[float]) -> tuple[float, float]:
    """Geometric mean of positive ratios and the geometric standard deviation factor (1 with one value)."""
    r = np.log(np.asarray(ratios, dtype=float))
    return float(np.exp(r.mean())), float(np.exp(r.std(ddof=1))) if len(r) > 1 else 1.0

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


def shared_test_set_variance(correct_a: Sequence[Sequence[bool]], correct_b: Sequence[Sequence[bool]]) -> float:
    """The variance of the seed-mean difference of two error rates (fractions), error(A) − error(B), when
    the arms are paired by seed (row s of each) and every model is scored on the SAME n test images.

    Image noise: with d̄(x) = mean_s [wrong_{A,s}(x) − wrong_{B,s}(x)] the per-image difference averaged
    over the k seeds, the seed-mean difference is the image mean of d̄, so its variance over test sets
    is Var_x(d̄)/n. Two models on one test set disagree on few images, so this is far below the
    2p(1−p)/n of two independent test sets; for one seed it is McNemar's ((b + c)/n − ((b − c)/n)²)/n,
    with b, c the images only A / only B gets right. Seed noise: the spread s²/k of the k per-seed
    differences (which holds some image noise again, so the sum errs on the safe side):

        Var = Var_x(d̄)/n + s²/k.

    >>> a = [[True] * 970 + [False] * 30]
    >>> b = [[True] * 960 + [False] * 40]
    >>> round(shared_test_set_variance(a, b), 8)  # 10 discordant images of 1000: (0.01 − 0.01²)/1000
    9.9e-06
    """
    wrong_a = ~np.asarray(correct_a, dtype=bool)
    wrong_b = ~np.asarray(correct_b, dtype=bool)
    if wrong_a.shape != wrong_b.shape or wrong_a.ndim != 2 or wrong_a.size == 0:
        raise ValueError(f"need two equal, non-empty (seeds, images) arrays; got {wrong_a.shape} and {wrong_b.shape}")
    d = wrong_a.astype(float) - wrong_b.astype(float)          # (k, n)
    return float(d.mean(axis=0).var() / d.shape[1] + _seed_variance(d.mean(axis=1)))


def _seed_variance(per_seed: np.ndarray) -> float:
    """s²/k of k per-seed differences (0 with one seed)."""
    k = len(per_seed)
    return float(per_seed.var(ddof=1)) / k if k > 1 else 0.0


def mde_shared_test_set(correct_a: Sequence[Sequence[bool]], correct_b: Sequence[Sequence[bool]],
                        alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest mean difference δ of two error rates (a fraction) detectable when the two arms are
    paired by seed (rows) and every model is scored on the SAME test images (`shared_test_set_variance`):

        δ_obs = (z_{1−α/2} + z_power) · √Var.

    An effect δ needs at least δ·n discordant images, whose McNemar variance is δ(1−δ)/n; so δ is never
    below the root of δ = z·√(δ(1−δ)/n + s²/k) (arms that barely disagree do not make tiny effects
    detectable). Returns max(δ_obs, that root).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    z2 = z_factor(alpha, power) ** 2
    observed = math.sqrt(z2 * shared_test_set_variance(a, b))
    n = a.shape[1]
    seed_var = _seed_variance((~a).mean(axis=1) - (~b).mean(axis=1))
    q = 1 + z2 / n  # δ²·q − δ·z²/n − z²·s²/k = 0
    floor = (z2 / n + math.sqrt((z2 / n) ** 2 + 4 * q * z2 * seed_var)) / (2 * q)
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

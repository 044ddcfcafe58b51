"""The claims module on synthetic records: gates force `inconclusive`, rules follow their thresholds,
paired statistics and McNemar agree with scipy, and the status page shows badges and reasons."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from flatlib.claims import Gate, judge
from flatlib.claims.rules import Detectable, Fit, Moved, NonInferior, PairedDirection, RatioBands
from flatlib.claims.stats import binomial_se, mcnemar, mde_error_difference, paired, shared_test_set_variance
from flatlib.claims.status import status_frame, status_html, tally
from flatlib.claims.verdict import VERDICTS
from flatlib.reference import paper_numbers, targets

LAMBDA = PairedDirection("λ1", "wd", "no wd", +1, log=True)
FIT = Fit(95.0)
MOVED = Moved(1e-2, "‖w‖²")


def weight_decay_claim(train_acc: dict[str, list[float]], w2_change: list[float], treat: list[float],
                       ctrl: list[float], n_test: int = 10_000, effect: float = 0.25):
    """A synthetic FF-style claim built from the same pieces the chapters use."""
    verdict, t = LAMBDA.decide(treat, ctrl)
    sd = float(np.std(np.log(treat) - np.log(ctrl), ddof=1))
    mde = (stats.t.ppf(0.95, len(treat) - 1) + stats.t.ppf(0.8, len(treat) - 1)) * sd / np.sqrt(len(treat))
    gates = {"trained": FIT.gate(train_acc, chance=10.0), "acted": MOVED.gate(w2_change),
             "resolvable": Detectable("(log λ1)").gate(mde, effect, f"{len(treat)} seeds, {n_test} test points")}
    return judge("FF-F1", verdict, gates=gates, ours="synthetic", headline="synthetic", rule=LAMBDA.text())


GOOD_FIT = {"SGD": [99.0, 99.5, 99.2], "wd": [99.1, 99.3, 98.9]}
RISE = ([13.0, 14.1, 12.7], [10.0, 11.0, 9.9])


def test_untrained_arm_is_inconclusive_with_the_reason():
    c = weight_decay_claim({"SGD": [11.5, 12.0, 99.0], "wd": [99.0] * 3}, [0.2] * 3, *RISE)
    assert c.verdict == "inconclusive"
    assert "SGD arm did not train (train accuracy 11.5 %, required ≥ 95 %; chance 10 %)" in c.reason


def test_identical_arms_are_inconclusive():
    same = [10.0, 11.0, 9.9]
    c = weight_decay_claim(GOOD_FIT, [0.0, 0.0, 0.0], same, same)
    assert c.verdict == "inconclusive" and c.reason.startswith("acted:")


def test_effect_below_the_floor_is_inconclusive():
    noisy = ([10.0, 30.0, 12.0], [11.0, 9.0, 25.0])
    c = weight_decay_claim(GOOD_FIT, [0.2] * 3, *noisy, effect=0.05)
    assert c.verdict == "inconclusive" and "resolvable" in c.reason and "minimum detectable effect" in c.reason


def test_clear_effect_in_the_claimed_direction_holds():
    c = weight_decay_claim(GOOD_FIT, [0.2] * 3, *RISE)
    assert c.verdict == "held" and c.reason == ""
    assert all(g.passed for g in c.gates.values())


def test_clear_effect_against_the_claim_does_not_hold():
    c = weight_decay_claim(GOOD_FIT, [0.2] * 3, RISE[1], RISE[0])
    assert c.verdict == "did not hold"


def test_a_failed_gate_overrides_any_verdict_but_not_not_run():
    bad = {"trained": Gate(False, "x"), "acted": Gate(True, "y"), "resolvable": Gate(True, "z")}
    for v in ("held", "partly held", "did not hold"):
        assert judge("FF-F1", v, gates=bad, ours="", headline="", rule="").verdict == "inconclusive"
    assert judge("FF-F1", "not run", gates={}, ours="", headline="", rule="").verdict == "not run"
    with pytest.raises(ValueError, match="missing"):
        judge("FF-F1", "held", gates={"trained": Gate(True, "")}, ours="", headline="", rule="")
    with pytest.raises(ValueError, match="unknown target"):
        judge("XX-1", "held", gates=bad, ours="", headline="", rule="")


@pytest.mark.parametrize("threshold", [90.0, 95.0, 97.5])
def test_fit_rule_text_matches_the_threshold_it_applies(threshold):
    fit = Fit(threshold)
    assert f"≥ {threshold:g} %" in fit.text()
    assert fit.gate({"a": [threshold]}).passed and not fit.gate({"a": [threshold - 1e-6]}).passed


@pytest.mark.parametrize("held_at,fails_at", [(100.0, 1.1), (10.0, 2.0)])
def test_ratio_rule_text_matches_the_thresholds_it_applies(held_at, fails_at):
    rule = RatioBands("r", held_at=held_at, fails_at=fails_at)
    numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", rule.text())]
    assert numbers == [held_at, fails_at]
    assert rule.decide(held_at) == "held" and rule.decide(fails_at) == "did not hold"
    assert rule.decide((held_at + fails_at) / 2) == "partly held"


def test_paired_rule_text_states_its_alpha_and_decides_by_it():
    strict = PairedDirection("q", "a", "b", +1, alpha=1e-9)
    assert "p < 1e-09" in strict.text()
    assert strict.decide(*RISE)[0] == "partly held"  # right sign, not significant at this alpha
    assert "p < 0.05" in LAMBDA.text() and LAMBDA.decide(*RISE)[0] == "held"


def _arms(n: int, only_t: int, only_c: int, both_wrong: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of two classifiers on n shared images: only_t right only for T, only_c only for C."""
    t = np.ones(n, dtype=bool)
    c = np.ones(n, dtype=bool)
    c[:only_t] = False
    t[only_t:only_t + only_c] = False
    t[-both_wrong:] = c[-both_wrong:] = False
    return t, c


def test_noninferiority_decides_on_both_sides_of_the_margin():
    rule = NonInferior(1.0, "wd", "no wd")
    assert "below 1 points" in rule.text() and "above 1 points" in rule.text()
    same = rule.excess(*zip(*[_arms(10_000, 20, 22), _arms(10_000, 25, 20), _arms(10_000, 18, 21)]))
    assert same.mean == pytest.approx(100 * (2 - 5 + 3) / 10_000 / 3)
    assert rule.decide(same) == "held" and rule.gate(same).passed
    worse = rule.excess(*zip(*[_arms(10_000, 10, 310), _arms(10_000, 12, 330), _arms(10_000, 8, 290)]))
    assert worse.lower > 1.0 and rule.decide(worse) == "did not hold" and rule.gate(worse).passed
    # 360 images, 1 point worse on average: the interval straddles the margin, so nothing is decided
    near = rule.excess(*zip(*[_arms(360, 3, 7, 5), _arms(360, 4, 7, 5), _arms(360, 2, 6, 5)]))
    assert near.lower < 1.0 < near.upper and rule.decide(near) is None
    gate = rule.gate(near)
    assert not gate.passed and "straddle" in gate.detail and "test images" in gate.detail


def test_shared_test_set_variance_is_calibrated():
    """McNemar's image variance of one error difference against Monte Carlo over many test sets."""
    rng = np.random.default_rng(0)
    n, p_only_t, p_only_c = 500, 0.02, 0.05
    cells = rng.multinomial(n, [p_only_t, p_only_c, 1 - p_only_t - p_only_c], size=40_000)
    diffs = (cells[:, 1] - cells[:, 0]) / n
    predicted = shared_test_set_variance(*([v] for v in _arms(n, int(p_only_t * n), int(p_only_c * n))))
    assert np.var(diffs) == pytest.approx(predicted, rel=0.03)
    assert predicted < 2 * 0.05 * 0.95 / n  # far below two independent test sets' binomial variance


def test_resolvable_gate_accepts_a_resolved_sign_only_when_asked():
    lam = paired(np.log([8.0, 9.0, 12.0]), np.log([1.0, 1.0, 1.0]))
    assert lam.t_pvalue < 0.05
    powered_only, either = Detectable("(log λ1)"), Detectable("(log λ1)", or_significant=True)
    assert not powered_only.gate(5.0, 0.25, "3 seeds", lam).passed
    gate = either.gate(5.0, 0.25, "3 seeds", lam)
    assert gate.passed and "resolved the sign" in gate.detail
    noisy = paired(np.log([8.0, 0.5, 3.0]), np.log([1.0, 1.0, 1.0]))
    assert noisy.t_pvalue > 0.05 and not either.gate(5.0, 0.25, "3 seeds", noisy).passed
    assert "either way" in either.text() and "either way" not in powered_only.text()


def test_paired_statistics_agree_with_scipy():
    a, b = np.array([1.2, 0.9, 1.5, 1.1, 1.3]), np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    t = paired(a, b)
    assert t.agree == 4 and t.diffs == pytest.approx(tuple(a - b))
    assert t.t_pvalue == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)
    assert t.sign_pvalue == pytest.approx(stats.binomtest(4, 5, alternative="greater").pvalue)


def test_mcnemar_on_a_constructed_pair_of_predictions():
    # 100 test points: both right on 80, only A right on 15, only B right on 3, both wrong on 2
    a = np.array([True] * 80 + [True] * 15 + [False] * 3 + [False] * 2)
    b = np.array([True] * 80 + [False] * 15 + [True] * 3 + [False] * 2)
    m = mcnemar(a, b)
    assert (m.only_a, m.only_b) == (15, 3)
    assert m.pvalue == pytest.approx(stats.binomtest(15, 18, 0.5).pvalue)
    assert m.pvalue < 0.05 and mcnemar(a, a).pvalue == 1.0


def test_minimum_detectable_effect_of_a_small_test_set():
    # one digits test image is 0.28 points; the paper's PoF gain of 0.09 points is far below what 360 images resolve
    assert binomial_se(0.03, 360) == pytest.approx(np.sqrt(0.03 * 0.97 / 360))
    mde = 100 * mde_error_difference(0.03, 360)
    assert mde > 3.0 and mde > 10 * 0.09
    assert 100 * mde_error_difference(0.03, 10_000_000) < 0.09


def test_paper_numbers_live_in_targets_csv():
    assert paper_numbers("FF-F1")["lambda_1:0.0005"] == 15.84
    assert paper_numbers("FIM-T1")["cifar10:resnet20:with"] == 7.89
    assert set(targets()["id"]) >= {"POF-T1", "FIM-TC", "FF-F8"}


def test_status_page_shows_tallies_badges_and_reasons(tmp_path):
    c = weight_decay_claim({"SGD": [11.5] * 3, "wd": [99.0] * 3}, [0.2] * 3, *RISE)
    c.record("default", tmp_path)
    judge("FF-F2", "held", gates={k: Gate(True, "ok") for k in ("trained", "acted", "resolvable")}, ours="x",
          headline="λ1 ×1.3", rule="r").record("default", tmp_path)
    judge("FF-F2", "did not hold", gates={k: Gate(True, "ok") for k in ("trained", "acted", "resolvable")}, ours="y",
          headline="λ1 ×0.9", rule="r").record("smoke", tmp_path)
    frame = status_frame(tmp_path)
    assert len(frame) == len(targets()) and set(frame["verdict"]) <= set(VERDICTS)
    page = status_html(frame)
    rows = re.findall(r"<tr><td><a href[^>]*>([^<]+)</a>(.*?)</tr>", page)
    assert [r[0] for r in rows] == list(targets()["id"])
    assert all('class="verdict-badge' in r[1] for r in rows), "every status row carries a badge"
    f1 = dict(rows)["FF-F1"]
    assert "verdict-inconclusive" in f1 and "SGD arm did not train" in f1
    f2 = dict(rows)["FF-F2"]
    assert "verdict-held" in f2 and "verdict-did-not-hold" in f2, "each profile's verdict side by side"
    assert 'id="status-counts"' in page
    assert tally(frame).loc["FF", "inconclusive"] == 1 and tally(frame).loc["FF", "held"] == 1


def test_fell_gate_needs_a_drop_in_every_seed():
    from flatlib.claims.rules import Fell

    rule = Fell(1e-2, "R")
    assert rule.gate([-0.5, -0.02]).passed
    assert not rule.gate([-0.5, -0.005]).passed and not rule.gate([0.5, -0.5]).passed and not rule.gate([]).passed
    assert "≥ 1e-02" in rule.text()


def test_seeds_needed_is_the_smallest_resolving_count():
    """seeds_needed(sd, effect) = n with mde_paired(n) ≤ effect < mde_paired(n − 1); None without a spread."""
    from flatlib.claims.stats import mde_paired, seeds_needed

    for sd, effect in [(0.53, 0.256), (1.0, 0.256), (0.1, 1.0), (2.0, 0.5)]:
        n = seeds_needed(sd, effect)
        assert mde_paired(sd, n) <= effect and (n == 2 or mde_paired(sd, n - 1) > effect)
    assert seeds_needed(float("nan"), 0.3) is None and seeds_needed(1.0, 1e-6, most=50) is None

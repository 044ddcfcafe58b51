"""The PoF claims: the toy landscape study (F1c, F1d, F2a, F2b), the image pipeline (T1, F4, F5, F6, X1)
and the cost per epoch (T2, from the update-rule benchmark)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from flatlib.claims.rules import (BENCH_TOLERANCE, Detectable, Fit, Moved, NoFurtherGain, PairedDirection, RatioBands,
                                   combine, mcnemar_counts)
from flatlib.claims.stats import binomial_se, mde_error_difference, mde_paired, ratio_spread, z_factor
from flatlib.claims.verdict import Claim, Claims, Gate, judge, not_applicable, not_run
from flatlib.experiments.pof_images import LANCZOS_TOL, f5_table
from flatlib.experiments.pof_toy import FLAT_TOL, XATOL, generalisation_table, toy_tables
from flatlib.reference import paper_numbers

# --- thresholds, fixed before any outcome (each with its reason) --------------------------------
FIT = Fit(95.0)
# acted (images): PoF moved the feature extractor φ, and λ1 of the classifier-space Hessian changed.
# A weight change counts as acting when it is ≥ ACTED_FACTOR × the relative shrinkage weight decay alone would
# make over the same steps, ηλT/(1 − μ) (momentum μ): what a post-training whose loss gradient is zero would do.
ACTED_FACTOR = 10.0
FLOAT_FLOOR = 1e-6         # the floor when there is no weight decay (float32 rounding is 6e-8 relative)
# λ1 comes from Lanczos converged to LANCZOS_TOL (1e-3, relative): a change must be ten times that
LAMBDA1_MOVED = Moved(10 * LANCZOS_TOL, "λ1 of the classifier-block training Hessian (PoF@E+Δ₁ vs SAM@E)")
# the fine-tune must leave PoF's point: its full training loss changes by ≥ 0.1 % (float64, full training set)
FINETUNE_LOSS_MOVED = Moved(1e-3, "the full training loss (classifier fine-tune vs PoF@E+Δ₁)")
TOY_MOVED = Moved(1e-2, "the training loss (PoF vs its start SGD@E)")
ERR = Detectable("points")
T1_EFFECT = paper_numbers("POF-T1")["SAM@E"] - paper_numbers("POF-T1")["PoF@E+Δ₁"]   # 0.09 points
F5_BANDS = RatioBands("the PoF/SAM peak ratio (geometric mean over seeds, on train and on test)", held_at=0.75,
                      fails_at=1.0, below=True, why="the paper's ≈ 0.5 ('roughly halves'): held within a factor 1.5 of it")
F6_BANDS = RatioBands("the median PoF/SAM perturbation ratio", held_at=100.0, fails_at=1.0,
                      why="the paper's 'a few orders of magnitude': at least two")
F2B_BAND = (2 / math.sqrt(2), 2 * math.sqrt(2))   # within a factor √2 of the paper's peak ratio 2
F2B_PARTLY = 1.1
F2B_MAX_SE = 0.2          # the mean peak ratio's seed standard error must resolve the band's lower edge vs 1.1
F2A_MAX_HALF_WIDTH = 0.10  # the bin-1 share must be known to ±10 points (α = 0.05, 80 % power)
RESOLUTION = 0.1           # a numerical error (optimiser tolerance) must be ≤ 10 % of the quantity it measures
T1_RULE = PairedDirection("test error", "PoF@E+Δ₁", "SAM@E+Δ₁", -1)
X1_RULE = NoFurtherGain("the classifier fine-tune", "PoF@E+Δ₁")


def decay_floor(lr: float, weight_decay: float, momentum: float, steps: int) -> float:
    """The "acted" floor of a relative weight change: ACTED_FACTOR × ηλT/(1 − μ), at least FLOAT_FLOOR."""
    return max(ACTED_FACTOR * lr * weight_decay * steps / (1 - momentum), FLOAT_FLOOR)


def both(*gates: Gate) -> Gate:
    """One gate that passes when all of ``gates`` pass; the details joined."""
    return Gate(all(g.passed for g in gates), "; ".join(g.detail for g in gates))


def _fit(runs: pd.DataFrame, methods: list[str]) -> Gate:
    return FIT.gate({m: list(100 - g["train_error"]) for m, g in runs[runs["method"].isin(methods)].groupby("method")})


def _err_resolvable(err_pct: pd.DataFrame, diffs: np.ndarray, n_test: int, effect: float) -> Gate:
    """Unpaired MDE (binomial error of two error rates on n test points, not averaged over seeds, + seed spread):
    conservative, for comparisons without per-image predictions (F4's epoch averages)."""
    sd = float(np.std(diffs, ddof=1)) / 100 if len(diffs) > 1 else 0.0
    mde = 100 * mde_error_difference(float(err_pct.to_numpy().mean()) / 100, n_test, sd, len(diffs))
    return ERR.gate(mde, effect, f"{n_test} test points per seed, {len(diffs)} seeds, unpaired")


def mde_paired_predictions(only_t: np.ndarray, only_c: np.ndarray, n_test: np.ndarray, diffs_pct: np.ndarray) -> float:
    """The minimum detectable mean error difference (points) of two models compared image by image, per seed on
    its own test set of n points: per seed the McNemar variance of the difference, ((b + c)/n − ((b − c)/n)²)/n,
    averaged over k seeds (÷ k²), plus the seed spread s²/k of the per-seed differences (conservative: s already
    holds the test-set noise); times z_{1−α/2} + z_power = 2.80."""
    b, c, n = (np.asarray(v, dtype=float) for v in (only_t, only_c, n_test))
    k = len(n)
    var = ((b + c) / n - ((b - c) / n) ** 2) / n
    sd = float(np.std(np.asarray(diffs_pct, float) / 100, ddof=1)) if k > 1 else 0.0
    return 100 * z_factor() * math.sqrt(var.sum() / k ** 2 + sd ** 2 / k)


def _paired_resolvable(pairs: pd.DataFrame, effect: float) -> tuple[Gate, float]:
    diffs = (pairs["error_treatment"] - pairs["error_control"]).to_numpy()
    mde = mde_paired_predictions(pairs["only_treatment"], pairs["only_control"], pairs["n_test"], diffs)
    return ERR.gate(mde, effect, f"{int(pairs['n_test'].min())} test points per seed, {len(pairs)} seeds, paired by "
                                 "image (McNemar variance) and by seed"), mde


def _curve_at(curves: pd.DataFrame, method: str, epoch: int, col: str) -> pd.Series:
    c = curves[(curves["method"] == method) & (curves["epoch"] == epoch)]
    return c.set_index("seed")[col]


def _steps(n_train: int, batch_size: int, epochs: int) -> int:
    return epochs * math.ceil(n_train / batch_size)


def pof_acted(g: pd.DataFrame, p: Any) -> Gate:
    """The image pipeline's acted gate: ‖Δφ‖/‖φ‖ ≥ the decay floor, and λ1 (classifier block) changed ≥ 1 %.
    Its detail adds (no gate) what sets ‖Δφ‖: `acted_context`."""
    steps = _steps(int(g["n_train"].min()), p.batch_size, min(p.post_epochs))
    phi = Moved(decay_floor(p.pof_lr, p.weight_decay, 0.9, steps),
                f"the feature-extractor weights ‖Δφ‖/‖φ‖ (PoF@E+Δ₁ vs SAM@E; floor {ACTED_FACTOR:g}× weight decay's "
                f"shrinkage ηλT/(1−μ) over T = {steps} steps)")
    lam = ((g["lambda1_pof"] - g["lambda1_sam"]) / g["lambda1_sam"]).to_numpy()
    gate = both(phi.gate(g["phi_change"].to_numpy()), LAMBDA1_MOVED.gate(lam))
    return Gate(gate.passed, f"{gate.detail}. {acted_context(g, p)}")


def _per_seed(values: Any) -> str:
    return ", ".join(f"{v:.2g}" for v in values)


def acted_context(g: pd.DataFrame, p: Any) -> str:
    """What sets PoF's ‖Δφ‖ (reported beside the acted gate, never a gate): PoF's mean φ-gradient at SAM@E against
    weight decay's pull λ‖φ‖ and against the unperturbed gradient (`pof_images.pof_gradient`: a steady gradient ḡ
    moves φ by ηT‖ḡ‖/(1 − μ), weight decay by ηλT‖φ‖/(1 − μ), so the floor asks ‖ḡ‖ ≳ ACTED_FACTOR·λ‖φ‖ whatever
    η and T), SAM continued's ‖Δφ‖/‖φ‖ over the same Δ₁, and PoF's after Δ₂ against its own floor."""
    n_train, d2 = int(g["n_train"].min()), max(p.post_epochs)
    steps2 = _steps(n_train, p.batch_size, d2)
    moved = (f"‖Δφ‖/‖φ‖ of SAM continued over Δ₁: {_per_seed(g['phi_change_sam'])}; of PoF after Δ₂ = {d2} epochs "
             f"(T = {steps2}): {_per_seed(g['phi_change_d2'])} (floor {decay_floor(p.pof_lr, p.weight_decay, 0.9, steps2):.2g})")
    if p.weight_decay == 0:
        return f"For comparison (no gate): {moved}"
    pull = p.weight_decay * g["phi_norm"]
    return (f"For comparison (no gate): PoF's mean φ-gradient (Eq. 5, {p.num_minibatches} mini-batch pairs at SAM@E) is "
            f"{_per_seed(g['grad_pof'] / pull)}× weight decay's pull λ‖φ‖ per seed (with the unperturbed classifier: "
            f"{_per_seed(g['grad_sgd'] / pull)}×); the φ floor asks ≈ {ACTED_FACTOR:g}× for any lr and Δ₁; {moved}")


def finetune_acted(theta_change: np.ndarray, loss_change: np.ndarray, floor: float) -> Gate:
    """X1's acted gate: the fine-tune moved the classifier weights (≥ ``floor``) and the training loss (≥ 0.1 %)."""
    th = Moved(floor, "the classifier weights ‖Δθ‖/‖θ‖ (fine-tune vs PoF@E+Δ₁)")
    return both(th.gate(theta_change), FINETUNE_LOSS_MOVED.gate(loss_change))


def x1_claim(acted: Gate, pairs: pd.DataFrame, trained: Gate, design: str, profile: str | None = None) -> Claim:
    """POF-X1 from the fine-tune's acted gate and the per-seed McNemar counts (fine-tuned vs PoF@E+Δ₁): no further
    gain unless McNemar (pooled) finds the fine-tune better; a worsening is reported; a no-op is inconclusive."""
    b, c = int(pairs["only_treatment"].sum()), int(pairs["only_control"].sum())
    verdict, m = X1_RULE.decide(b, c)
    diffs = (pairs["error_treatment"] - pairs["error_control"]).to_numpy()
    t = PairedDirection("test error", "the fine-tuned model", "PoF@E+Δ₁", -1).test(pairs["error_treatment"],
                                                                                   pairs["error_control"])
    resolvable, _ = _paired_resolvable(pairs, T1_EFFECT)
    worse = verdict == "partly held"
    c_ = judge("POF-X1", verdict, gates={"trained": trained, "acted": acted, "resolvable": resolvable},
               ours=f"{design}: fine-tuned − PoF@E+Δ₁ {t.describe('{:+.2f}')}; McNemar (pooled): fine-tune right/PoF "
                    f"wrong on {b}, the converse on {c} test points, p = {m.pvalue:.2g}"
                    + ("; the fine-tune made the error worse" if worse else ""),
               headline=f"fine-tune {float(np.mean(diffs)):+.2f} points" + (" (worse)" if worse else ""),
               rule=f"{X1_RULE.text()}. Its acted gate: the fine-tune moves the classifier weights by ≥ "
                    f"{ACTED_FACTOR:g}× weight decay's shrinkage and {FINETUNE_LOSS_MOVED.text()}; resolvable: "
                    f"{ERR.text()}, against the paper's PoF gain",
               values={"paired": t.__dict__, "only_finetune": b, "only_pof": c, "mcnemar_p": m.pvalue,
                       "worsened": worse})
    if profile is not None:
        c_.record(profile)
    return c_


def images(res: dict[str, pd.DataFrame], meas: dict[str, pd.DataFrame], p: Any,
           bench: tuple[pd.DataFrame, dict | None] | None = None) -> Claims:
    """POF-T1, F4, F5, F6, X1 from the image runs, and T2 from the benchmark (``bench``)."""
    out = Claims()
    E, d1 = p.pretrain_epochs, min(p.post_epochs)
    runs, curves, g = res["runs"], res["curves"], meas["gates"].set_index("seed")
    n_test = int(runs["n_test"].min())
    pts = res["points"].pivot_table(index="seed", columns="checkpoint", values="test_error")
    trained = _fit(runs, ["SGD", "SAM", "PoF"])
    acted = pof_acted(g, p)
    design = f"{p.dataset}/{p.model}, {len(pts)} seeds, {n_test} test points per seed"
    gate_text = f"Gates: {FIT.text()}; acted: PoF moves φ by ≥ {ACTED_FACTOR:g}× weight decay's shrinkage and " \
                f"{LAMBDA1_MOVED.text()}; {ERR.text()}"

    def record(target: str, verdict: str, gates: dict, ours: str, headline: str, rule: str, values: dict) -> None:
        c = judge(target, verdict, gates=gates, ours=f"{design}: {ours}", headline=headline, rule=f"{rule}. {gate_text}",
                  values=values)
        c.record(p.profile)
        out.append(c)

    # T1: PoF@E+Δ₁ against SAM continued for the same epochs, paired by seed and by image (McNemar)
    pairs = meas["pairs"]
    t1 = pairs[pairs["pair"] == "T1"]
    verdict, t = T1_RULE.decide(pts["PoF@E+Δ₁"], pts["SAM@E+Δ₁"])
    b, c = int(t1["only_treatment"].sum()), int(t1["only_control"].sum())
    m = mcnemar_counts(b, c)
    if verdict == "held" and not (m.pvalue < T1_RULE.alpha and b > c):
        verdict = "partly held"
    res1, mde1 = _paired_resolvable(t1, T1_EFFECT)
    per_seed = "; ".join(f"seed {r.seed}: {r.only_treatment}/{r.only_control}" for r in t1.itertuples())
    record("POF-T1", verdict, {"trained": trained, "acted": acted, "resolvable": res1},
           f"test error PoF@{E + d1} {pts['PoF@E+Δ₁'].mean():.2f} % vs SAM@{E + d1} {pts['SAM@E+Δ₁'].mean():.2f} %; "
           f"PoF − SAM {t.describe('{:+.2f}')}; McNemar PoF right/SAM wrong vs the converse ({per_seed}; pooled "
           f"p = {m.pvalue:.2g}); minimum detectable effect {mde1:.2f} points vs the paper's {T1_EFFECT:.2f}",
           f"PoF − SAM {t.mean:+.2f} points ({t.agree}/{t.n} seeds lower)",
           T1_RULE.text() + f"; held also needs McNemar's exact test on the pooled test points to favour PoF with "
                            f"p < {T1_RULE.alpha:g}", {"paired": t.__dict__, "mcnemar_only_pof": b, "mcnemar_only_sam": c,
                                                      "mcnemar_p": m.pvalue, "mde": mde1})

    # F4: the error averaged over the first Δ₁ post-training epochs
    after = curves[(curves["epoch"] > E) & (curves["epoch"] <= E + d1) & curves["method"].isin(["SAM", "PoF"])]
    per_seed = after.pivot_table(index="seed", columns="method", values="test_error", aggfunc="mean")
    rule = PairedDirection(f"the test error averaged over epochs {E + 1}–{E + d1}", "PoF", "SAM continued", -1)
    verdict, t = rule.decide(per_seed["PoF"], per_seed["SAM"])
    res4 = _err_resolvable(per_seed, np.array(t.diffs), n_test, T1_EFFECT)
    record("POF-F4", verdict, {"trained": trained, "acted": acted, "resolvable": res4},
           f"PoF − SAM continued {t.describe('{:+.2f}')}", f"PoF − SAM {t.mean:+.2f} points ({t.agree}/{t.n} seeds lower)",
           rule.text(), {"paired": t.__dict__})

    # F5: the classifier-space Hessian peak, PoF / SAM
    t5 = f5_table(meas["f5"])
    ratios = {s: ratio_spread(gr["PoF/SAM"]) for s, gr in t5.groupby("split")}
    verdict = combine(*(F5_BANDS.decide(r) for r, _ in ratios.values()))
    logs = np.log(t5["PoF/SAM"].to_numpy())
    sd = float(np.std(logs, ddof=1)) if len(logs) > 1 else math.nan
    res5 = Detectable("(log ratio)").gate(mde_paired(sd, len(logs)) if np.isfinite(sd) else math.inf,
                                          math.log(paper_numbers("POF-F5")["peak_ratio"]), f"{len(logs)} seed × split ratios")
    record("POF-F5", verdict, {"trained": trained, "acted": acted, "resolvable": res5},
           "; ".join(f"{s}: PoF/SAM peak ×{r:.2f} (geometric SD ×{f:.2f})" for s, (r, f) in ratios.items())
           + "; λ1 (full training set) PoF/SAM " + ", ".join(f"{v:.2f}" for v in (g["lambda1_pof"] / g["lambda1_sam"])),
           "PoF/SAM peak " + " / ".join(f"{r:.2f}" for r, _ in ratios.values()), F5_BANDS.text(),
           {s: r for s, (r, _) in ratios.items()})

    # F6: perturbation sizes (judged only when PoF acted: judge() makes it inconclusive otherwise)
    med = meas["f6"].groupby("method")["size"].median()
    pick = {k: float(med[[m for m in med.index if m.startswith(k)][0]]) for k in ("PoF", "SAM", "SGD")}
    ratio = pick["PoF"] / pick["SAM"]
    verdict = F6_BANDS.decide(ratio) if pick["SAM"] > pick["SGD"] else "did not hold"
    n6 = int(meas["f6"].groupby("method").size().min())
    record("POF-F6", verdict, {"trained": trained, "acted": acted,
                               "resolvable": not_applicable(f"medians over ≥ {n6} mini-batches per method; the bands are "
                                                            "orders of magnitude apart")},
           f"median ‖δθ‖ PoF {pick['PoF']:.3g}, SAM {pick['SAM']:.3g}, SGD {pick['SGD']:.3g} (PoF/SAM ×{ratio:.3g})",
           f"PoF/SAM ×{ratio:.3g}", F6_BANDS.text() + "; and SAM's perturbation must exceed the SGD step", pick)

    # X1: a classifier fine-tune after PoF gives no further gain
    loss_pof, loss_ft = g["train_loss PoF@E+Δ₁"], g["train_loss PoF@E+Δ₁ + classifier"]
    floor = decay_floor(p.finetune_lr, p.weight_decay, 0.9, _steps(int(g["n_train"].min()), p.batch_size,
                                                                  p.finetune_epochs))
    ft_acted = finetune_acted(g["theta_change_finetune"].to_numpy(), ((loss_ft - loss_pof) / loss_pof).to_numpy(), floor)
    out.append(x1_claim(ft_acted, pairs[pairs["pair"] == "X1"], trained, design, p.profile))

    out.append(cost(bench, p.profile))
    return out


def cost(bench: tuple[pd.DataFrame, dict | None] | None, profile: str) -> Claim:
    """POF-T2: PoF's and SAM's cost per epoch relative to SGD, from a GPU run of the update-rule benchmark."""
    table, blob = bench if bench is not None else (pd.DataFrame(), None)
    paper = paper_numbers("POF-T2")
    if blob is None or blob.get("quick", True) or "threads" in blob["device"] or "cpu" in blob["device"].lower():
        claim = not_run("POF-T2", "needs a GPU result of benchmarks/update_rules.py (CPU --quick ratios are not comparable)")
    else:
        wrn = table[table["model"].str.startswith("wrn")].set_index("method")["ours: ratio to SGD"]
        ok = {m: float(wrn[m]) <= BENCH_TOLERANCE * paper[f"{m}_ratio"] for m in ("pof", "sam")}
        verdict = "held" if all(ok.values()) else "partly held" if any(ok.values()) else "did not hold"
        claim = judge("POF-T2", verdict,
                      gates={"trained": not_applicable("a timing benchmark"),
                             "acted": not_applicable("a timing benchmark"),
                             "resolvable": Gate(True, f"measured on a GPU ({blob['device']})")},
                      ours=f"PoF {wrn['pof']:.2f}×, SAM {wrn['sam']:.2f}× SGD per epoch ({table['model'].iloc[0]})",
                      headline=f"PoF {wrn['pof']:.2f}×, SAM {wrn['sam']:.2f}×",
                      rule=f"held if both PoF's and SAM's time per epoch relative to SGD are at most {BENCH_TOLERANCE:g}× "
                           f"the paper's ratios; partly held if one is",
                      values={"pof": float(wrn["pof"]), "sam": float(wrn["sam"])},
                      scale=f"GPU benchmark, {blob['device']}")
    claim.record(profile)
    return claim


def toy(res: dict[str, pd.DataFrame], p: Any) -> Claims:
    """POF-F1c, F1d, F2a, F2b on the toy landscape."""
    out = Claims()
    runs = res["runs"]
    fitted = runs[runs["method"].isin(["SGD", "PoF"])]
    trained = FIT.gate({m: list(100 - g["train_error"]) for m, g in fitted.groupby("method")})
    start = runs[runs["method"] == "SGD (PoF start)"].set_index("seed")["train_loss"]
    pof = runs[runs["method"] == "PoF"].set_index("seed")["train_loss"]
    acted = TOY_MOVED.gate(((pof - start) / start).to_numpy())
    design = f"toy data, {res['runs']['seed'].nunique()} seeds"
    tables = toy_tables(res, p)

    def record(target: str, verdict: str, gates: dict, ours: str, headline: str, rule: str, values: dict) -> None:
        c = judge(target, verdict, gates=gates, ours=f"{design}: {ours}", headline=headline,
                  rule=f"{rule}. Gates: {FIT.text()}; {TOY_MOVED.text()}", values=values)
        c.record(p.profile)
        out.append(c)

    # F1c: ΔL at the final layer (paired) and ΔL rising with depth after SGD; ΔL at the continuous minimiser
    f1c = res["f1c"]
    last = f1c["layer"].max()
    final = f1c[f1c["layer"] == last].pivot_table(index="seed", columns="method", values="delta_l")
    rule = PairedDirection("the final-layer ΔL", "PoF", "SGD", -1)
    v1, t = rule.decide(final["PoF"], final["SGD"])
    sgd_mean = f1c[f1c["method"] == "SGD"].groupby("layer")["delta_l"].mean()
    rho = float(stats.spearmanr(sgd_mean.index, sgd_mean.to_numpy()).statistic) if len(sgd_mean) > 2 else math.nan
    verdict = combine(v1, "held" if rho > 0 else "did not hold")
    lam = float(f1c.loc[f1c["layer"] == last, "lambda_1"].max())
    err = 0.5 * lam * XATOL ** 2
    dl = float(final.to_numpy().min())
    ok = err <= RESOLUTION * dl
    resolvable = Gate(ok, f"continuous minimiser located to α ± {XATOL:g} (bounded Brent): ΔL error ≤ ½λ1·tol² = "
                          f"{err:.2g} {'≤' if ok else '>'} {RESOLUTION:g}× the smallest final-layer ΔL {dl:.2g}")
    record("POF-F1c", verdict, {"trained": trained, "acted": acted, "resolvable": resolvable},
           f"final-layer ΔL SGD {final['SGD'].mean():.3g} vs PoF {final['PoF'].mean():.3g}, PoF − SGD "
           f"{t.describe()}; Spearman(layer, ΔL after SGD) = {rho:.2f}", f"ΔL PoF − SGD {t.mean:+.3g}",
           rule.text() + "; and ΔL after SGD rises with depth (Spearman > 0); held if both", {"paired": t.__dict__,
                                                                                            "spearman": rho})

    # F1d: flat width along the final layer's top eigenvector (root finding; a width capped by the slice is censored)
    w = res["widths"]
    w1 = w[w["eigenvector"] == 1].pivot_table(index="seed", columns="method", values="width")
    rule = PairedDirection(f"the flat width along v₁ (training loss within {FLAT_TOL:g} of L(0))", "PoF", "SGD", +1)
    verdict, t = rule.decide(w1["PoF"], w1["SGD"])
    capped = int(w.loc[w["eigenvector"] == 1, "capped"].sum())
    ok = 2 * XATOL <= RESOLUTION * float(w1.to_numpy().min()) and capped == 0
    record("POF-F1d", verdict, {"trained": trained, "acted": acted,
                                "resolvable": Gate(ok, f"edges by root finding to ± {XATOL:g}: width error ≤ {2 * XATOL:g} "
                                                       f"{'≤' if 2 * XATOL <= RESOLUTION * float(w1.to_numpy().min()) else '>'} "
                                                       f"{RESOLUTION:g}× the smallest width {w1.to_numpy().min():.3g}; "
                                                       f"{capped} widths capped by the slice radius ±{p.slice_radius:g} "
                                                       "(censored; none allowed)")},
           f"width SGD {w1['SGD'].mean():.3g} vs PoF {w1['PoF'].mean():.3g}, PoF − SGD {t.describe()}",
           f"width PoF − SGD {t.mean:+.3g}", rule.text(), {"paired": t.__dict__})

    # F2a: mini-batch gradients most often align with the principal eigenvector
    counts = tables["f2a"].set_index("rank")["count"].sort_values(ascending=False)
    total = int(counts.sum())
    top, runner = int(counts.get(1, 0)), int(counts.drop(1, errors="ignore").max()) if len(counts) > 1 else 0
    mode = int(counts.idxmax())
    pval = float(stats.binomtest(top, top + runner, 0.5, alternative="greater").pvalue) if top + runner else 1.0
    verdict = ("held" if pval < 0.05 else "partly held") if mode == 1 else "did not hold"
    half = z_factor() * binomial_se(0.5, total)
    sgd_fit = FIT.gate({"SGD": list(100 - runs.loc[runs["method"] == "SGD", "train_error"])})
    record("POF-F2a", verdict, {"trained": sgd_fit, "acted": not_applicable("an observation of the SGD model"),
                                "resolvable": Gate(half <= F2A_MAX_HALF_WIDTH,
                                                   f"bin-1 share known to ±{half:.3f} over {total} mini-batches "
                                                   f"({'≤' if half <= F2A_MAX_HALF_WIDTH else '>'} {F2A_MAX_HALF_WIDTH:g})")},
           f"bin 1 holds {top / total:.0%} of {total} mini-batches, the runner-up bin {runner / total:.0%}; "
           f"most frequent bin {mode}; binomial test bin 1 vs runner-up p = {pval:.2g}",
           f"bin 1: {top / total:.0%}",
           "held if bin 1 (the principal eigenvector) is the most frequent argmax and a one-sided binomial test of its "
           "count against the runner-up bin's gives p < 0.05; partly held if most frequent only", {"top": top,
                                                                                                   "runner": runner})

    # F2b: ξ* peak ratio test/train ≈ 2
    pk = tables["f2b"]
    r = float(pk["peak_ratio"].mean())
    se = float(pk["peak_ratio"].std(ddof=1)) / math.sqrt(len(pk)) if len(pk) > 1 else math.inf
    verdict = "held" if F2B_BAND[0] <= r <= F2B_BAND[1] else ("partly held" if r > F2B_PARTLY else "did not hold")
    record("POF-F2b", verdict, {"trained": sgd_fit, "acted": not_applicable("an observation of the SGD model"),
                                "resolvable": Gate(se <= F2B_MAX_SE, f"standard error of the mean peak ratio {se:.3g} over "
                                                                     f"{len(pk)} seeds ({'≤' if se <= F2B_MAX_SE else '>'} "
                                                                     f"{F2B_MAX_SE:g})")},
           f"test/train ξ* peak ratio {r:.2f} ± {se:.3f} (s.e.; KDE on log ξ*)", f"peak ratio {r:.2f}",
           f"held if the mean test/train peak ratio lies in [{F2B_BAND[0]:.2f}, {F2B_BAND[1]:.2f}] (within a factor "
           f"√2 of the paper's 2); partly held if it exceeds {F2B_PARTLY:g}", {"peak_ratio": r, "se": se})
    return out


TOY_GENERALISATION = PairedDirection("the toy test error", "PoF", "SGD continued", -1)


class Line(str):
    """A generated sentence that a notebook shows as markdown."""

    def _repr_markdown_(self) -> str:
        return str(self)


def toy_generalisation(res: dict[str, pd.DataFrame]) -> Line:
    """The verdict line under the toy study's own test errors: did PoF generalise better than SGD on the toy
    (per seed, paired t and McNemar's exact test pooled over the seeds' test sets)? Not a target of the status page."""
    t = generalisation_table(res)
    verdict, pt = TOY_GENERALISATION.decide(t["PoF test error %"], t["SGD test error %"])
    b, c = int(t["only_pof"].sum()), int(t["only_sgd"].sum())
    m = mcnemar_counts(b, c)
    if verdict == "held" and not (m.pvalue < TOY_GENERALISATION.alpha and b > c):
        verdict = "partly held"
    word = "lower" if pt.mean < 0 else "higher"
    return Line(f"**Toy generalisation (the paper's claim: PoF generalises better than SGD): {verdict}.** PoF's test "
                f"error is {word} than SGD's on average: PoF − SGD {pt.describe('{:+.2f}')} points; McNemar (pooled "
                f"over {len(t)} test sets of {int(t['n_test'].min())} points): PoF right/SGD wrong on {b}, the converse "
                f"on {c}, p = {m.pvalue:.2g}. *Rule:* {TOY_GENERALISATION.text()}; held also needs McNemar p < "
                f"{TOY_GENERALISATION.alpha:g} in PoF's favour.")

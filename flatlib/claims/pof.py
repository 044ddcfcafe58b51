"""The PoF claims: the toy landscape study (F1c, F1d, F2a, F2b), the image pipeline (T1, F4, F5, F6, X1)
and the cost per epoch (T2, from the update-rule benchmark)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from flatlib.claims.rules import Detectable, Fit, Moved, PairedDirection, RatioBands, combine
from flatlib.claims.stats import binomial_se, mde_error_difference, mde_paired, ratio_spread, z_factor
from flatlib.claims.verdict import Claim, Claims, Gate, judge, not_applicable, not_run
from flatlib.experiments.pof import f5_table, flat_width, toy_tables
from flatlib.reference import paper_numbers

# --- thresholds, fixed before any outcome (each with its reason) --------------------------------
FIT = Fit(95.0)
# the paper's T1 gain is 0.09 of SAM's 2.50 points (3.6 %): a post-training that moves the test loss
# by less than 1 % cannot produce it
POF_MOVED = Moved(1e-2, "the test loss (PoF@E+Δ₁ vs its start SAM@E)")
TOY_MOVED = Moved(1e-2, "the training loss (PoF vs its start SGD@E)")
FINETUNE_MOVED = Moved(1e-3, "the test loss (classifier fine-tune vs PoF@E+Δ₁)")
ERR = Detectable("points")
T1_EFFECT = paper_numbers("POF-T1")["SAM@E"] - paper_numbers("POF-T1")["PoF@E+Δ₁"]   # 0.09 points
F5_BANDS = RatioBands("the PoF/SAM peak ratio (geometric mean over seeds, on train and on test)", held_at=0.75,
                      fails_at=1.0, below=True, why="the paper's ≈ 0.5 ('roughly halves'): held within a factor 1.5 of it")
F6_BANDS = RatioBands("the median PoF/SAM perturbation ratio", held_at=100.0, fails_at=1.0,
                      why="the paper's 'a few orders of magnitude': at least two")
BENCH_TOLERANCE = 1.10   # one tolerance for both cost ratios (POF-T2) and FIM-TC: 10 % over the paper's
F2B_BAND = (2 / math.sqrt(2), 2 * math.sqrt(2))   # within a factor √2 of the paper's peak ratio 2
F2B_PARTLY = 1.1
F2B_MAX_SE = 0.2          # the mean peak ratio's seed standard error must resolve the band's lower edge vs 1.1
F2A_MAX_HALF_WIDTH = 0.10  # the bin-1 share must be known to ±10 points (α = 0.05, 80 % power)
GRID_RESOLUTION = 0.1      # a grid's quantisation error must be ≤ 10 % of the quantity it measures


def _fit(runs: pd.DataFrame, methods: list[str]) -> Gate:
    return FIT.gate({m: list(100 - g["train_error"]) for m, g in runs[runs["method"].isin(methods)].groupby("method")})


def _err_resolvable(err_pct: pd.DataFrame, diffs: np.ndarray, n_test: int, effect: float) -> Gate:
    sd = float(np.std(diffs, ddof=1)) / 100 if len(diffs) > 1 else 0.0
    mde = 100 * mde_error_difference(float(err_pct.to_numpy().mean()) / 100, n_test, sd, len(diffs))
    return ERR.gate(mde, effect, f"{n_test} test points, {len(diffs)} seeds")


def _curve_at(curves: pd.DataFrame, method: str, epoch: int, col: str) -> pd.Series:
    c = curves[(curves["method"] == method) & (curves["epoch"] == epoch)]
    return c.set_index("seed")[col]


def images(res: dict[str, pd.DataFrame], meas: dict[str, pd.DataFrame], p: Any,
           bench: tuple[pd.DataFrame, dict | None] | None = None) -> Claims:
    """POF-T1, F4, F5, F6, X1 from the image runs, and T2 from the benchmark (``bench``)."""
    out = Claims()
    E, d1 = p.pretrain_epochs, min(p.post_epochs)
    runs, curves = res["runs"], res["curves"]
    n_test = int(runs["n_test"].min())
    pts = res["points"].pivot_table(index="seed", columns="checkpoint", values="test_error")
    trained = _fit(runs, ["SGD", "SAM", "PoF"])
    start, end = _curve_at(curves, "SAM", E, "test_loss"), _curve_at(curves, "PoF", E + d1, "test_loss")
    acted = POF_MOVED.gate(((end - start) / start).to_numpy())
    design = f"{p.dataset}/{p.model}, {len(pts)} seeds, {n_test} test points"

    def record(target: str, verdict: str, gates: dict, ours: str, headline: str, rule: str, values: dict) -> None:
        c = judge(target, verdict, gates=gates, ours=f"{design}: {ours}", headline=headline,
                  rule=f"{rule}. Gates: {FIT.text()}; {POF_MOVED.text()}; {ERR.text()}", values=values)
        c.record(p.profile)
        out.append(c)

    # T1: PoF@E+Δ₁ against SAM continued for the same epochs, paired by seed
    rule = PairedDirection("test error", "PoF@E+Δ₁", "SAM@E+Δ₁", -1)
    verdict, t = rule.decide(pts["PoF@E+Δ₁"], pts["SAM@E+Δ₁"])
    record("POF-T1", verdict, {"trained": trained, "acted": acted,
                               "resolvable": _err_resolvable(pts[["PoF@E+Δ₁", "SAM@E+Δ₁"]], np.array(t.diffs), n_test,
                                                             T1_EFFECT)},
           f"test error PoF@{E + d1} {pts['PoF@E+Δ₁'].mean():.2f} % vs SAM@{E + d1} {pts['SAM@E+Δ₁'].mean():.2f} %; "
           f"PoF − SAM {t.describe('{:+.2f}')}", f"PoF − SAM {t.mean:+.2f} points", rule.text(), {"paired": t.__dict__})

    # F4: the error averaged over the first Δ₁ post-training epochs
    after = curves[(curves["epoch"] > E) & (curves["epoch"] <= E + d1) & curves["method"].isin(["SAM", "PoF"])]
    per_seed = after.pivot_table(index="seed", columns="method", values="test_error", aggfunc="mean")
    rule = PairedDirection(f"the test error averaged over epochs {E + 1}–{E + d1}", "PoF", "SAM continued", -1)
    verdict, t = rule.decide(per_seed["PoF"], per_seed["SAM"])
    record("POF-F4", verdict, {"trained": trained, "acted": acted,
                               "resolvable": _err_resolvable(per_seed, np.array(t.diffs), n_test, T1_EFFECT)},
           f"PoF − SAM continued {t.describe('{:+.2f}')}", f"PoF − SAM {t.mean:+.2f} points", rule.text(),
           {"paired": t.__dict__})

    # F5: the classifier-space Hessian peak, PoF / SAM
    t5 = f5_table(meas["f5"])
    ratios = {s: ratio_spread(g["PoF/SAM"]) for s, g in t5.groupby("split")}
    verdict = combine(*(F5_BANDS.decide(r) for r, _ in ratios.values()))
    logs = np.log(t5["PoF/SAM"].to_numpy())
    sd = float(np.std(logs, ddof=1)) if len(logs) > 1 else math.nan
    res5 = Detectable("(log ratio)").gate(mde_paired(sd, len(logs)) if np.isfinite(sd) else math.inf,
                                          math.log(paper_numbers("POF-F5")["peak_ratio"]), f"{len(logs)} seed × split ratios")
    record("POF-F5", verdict, {"trained": trained, "acted": acted, "resolvable": res5},
           "; ".join(f"{s}: PoF/SAM peak ×{r:.2f} (geometric SD ×{f:.2f})" for s, (r, f) in ratios.items()),
           "PoF/SAM peak " + " / ".join(f"{r:.2f}" for r, _ in ratios.values()), F5_BANDS.text(),
           {s: r for s, (r, _) in ratios.items()})

    # F6: perturbation sizes
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
    fe = E + d1 + p.finetune_epochs
    ft_acted = FINETUNE_MOVED.gate(((_curve_at(curves, "PoF+classifier", fe, "test_loss") - end) / end).to_numpy())
    rule = PairedDirection("test error", "the fine-tuned model", "PoF@E+Δ₁", -1)
    _, t = rule.decide(pts["PoF@E+Δ₁ + classifier"], pts["PoF@E+Δ₁"])
    decrease = t.agree == t.n and t.t_pvalue < rule.alpha
    worse = PairedDirection("test error", "the fine-tuned model", "PoF@E+Δ₁", +1).test(
        pts["PoF@E+Δ₁ + classifier"], pts["PoF@E+Δ₁"])
    worsened = worse.agree == worse.n and worse.t_pvalue < rule.alpha
    verdict = "did not hold" if decrease else ("partly held" if worsened else "held")
    record("POF-X1", verdict, {"trained": trained, "acted": ft_acted,
                               "resolvable": _err_resolvable(pts[["PoF@E+Δ₁", "PoF@E+Δ₁ + classifier"]],
                                                             np.array(t.diffs), n_test, T1_EFFECT)},
           f"fine-tuned − PoF@{E + d1} {t.describe('{:+.2f}')}" + ("; the fine-tune made the error worse" if worsened else ""),
           f"fine-tune {t.mean:+.2f} points",
           "held (no further gain) unless the fine-tune lowers the test error in every seed with a one-sided paired "
           f"t-test p < {rule.alpha:g} (did not hold); a significant worsening is partly held and said. Its acted gate: "
           + FINETUNE_MOVED.text(), {"paired": t.__dict__, "worsened": worsened})

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


def toy(res: dict[str, pd.DataFrame], p: Any, flat_tol: float = 0.1) -> Claims:
    """POF-F1c, F1d, F2a, F2b on the toy landscape."""
    out = Claims()
    runs = res["runs"]
    fitted = runs[runs["method"].isin(["SGD", "PoF"])]
    trained = FIT.gate({m: list(100 - g["train_error"]) for m, g in fitted.groupby("method")})
    start = runs[runs["method"] == "SGD (PoF start)"].set_index("seed")["train_loss"]
    pof = runs[runs["method"] == "PoF"].set_index("seed")["train_loss"]
    acted = TOY_MOVED.gate(((pof - start) / start).to_numpy())
    h = 2 * p.slice_radius / (p.slice_points - 1)
    design = f"toy data, {res['runs']['seed'].nunique()} seeds"

    def record(target: str, verdict: str, gates: dict, ours: str, headline: str, rule: str, values: dict) -> None:
        c = judge(target, verdict, gates=gates, ours=f"{design}: {ours}", headline=headline,
                  rule=f"{rule}. Gates: {FIT.text()}; {TOY_MOVED.text()}", values=values)
        c.record(p.profile)
        out.append(c)

    # F1c: ΔL at the final layer (paired) and ΔL rising with depth after SGD
    f1c = res["f1c"]
    last = f1c["layer"].max()
    final = f1c[f1c["layer"] == last].pivot_table(index="seed", columns="method", values="delta_l")
    rule = PairedDirection("the final-layer ΔL", "PoF", "SGD", -1)
    v1, t = rule.decide(final["PoF"], final["SGD"])
    sgd_mean = f1c[f1c["method"] == "SGD"].groupby("layer")["delta_l"].mean()
    rho = float(stats.spearmanr(sgd_mean.index, sgd_mean.to_numpy()).statistic) if len(sgd_mean) > 2 else math.nan
    verdict = combine(v1, "held" if rho > 0 else "did not hold")
    lam = float(f1c.loc[(f1c["layer"] == last) & (f1c["method"] == "SGD"), "lambda_1"].mean())
    quant = 0.5 * lam * (h / 2) ** 2
    dl = float(final["SGD"].mean())
    ok = quant <= GRID_RESOLUTION * dl
    resolvable = Gate(ok, f"grid step {h:.3g}: quantisation error ½λ1(h/2)² = {quant:.2g} "
                          f"{'≤' if ok else '>'} {GRID_RESOLUTION:g}× SGD's final-layer ΔL {dl:.2g}")
    record("POF-F1c", verdict, {"trained": trained, "acted": acted, "resolvable": resolvable},
           f"final-layer ΔL SGD {final['SGD'].mean():.3g} vs PoF {final['PoF'].mean():.3g}, PoF − SGD "
           f"{t.describe()}; Spearman(layer, ΔL after SGD) = {rho:.2f}", f"ΔL PoF − SGD {t.mean:+.3g}",
           rule.text() + "; and ΔL after SGD rises with depth (Spearman > 0); held if both", {"paired": t.__dict__,
                                                                                            "spearman": rho})

    # F1d: flat width along the final layer's top eigenvector
    w = flat_width(res["f1d"], flat_tol)
    w1 = w[w["eigenvector"] == 1].pivot_table(index="seed", columns="method", values="width")
    rule = PairedDirection(f"the flat width along v₁ (training loss within {flat_tol:g} of L(0))", "PoF", "SGD", +1)
    verdict, t = rule.decide(w1["PoF"], w1["SGD"])
    ok = h <= GRID_RESOLUTION * float(w1["SGD"].mean())
    record("POF-F1d", verdict, {"trained": trained, "acted": acted,
                                "resolvable": Gate(ok, f"grid step {h:.3g} {'≤' if ok else '>'} {GRID_RESOLUTION:g}× "
                                                       f"SGD's mean width {w1['SGD'].mean():.3g}")},
           f"width SGD {w1['SGD'].mean():.3g} vs PoF {w1['PoF'].mean():.3g}, PoF − SGD {t.describe()}",
           f"width PoF − SGD {t.mean:+.3g}", rule.text(), {"paired": t.__dict__})

    # F2a: mini-batch gradients most often align with the principal eigenvector
    counts = toy_tables(res, p, flat_tol)["f2a"].set_index("rank")["count"].sort_values(ascending=False)
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
    pk = toy_tables(res, p, flat_tol)["f2b"]
    r = float(pk["peak_ratio"].mean())
    se = float(pk["peak_ratio"].std(ddof=1)) / math.sqrt(len(pk)) if len(pk) > 1 else math.inf
    verdict = "held" if F2B_BAND[0] <= r <= F2B_BAND[1] else ("partly held" if r > F2B_PARTLY else "did not hold")
    record("POF-F2b", verdict, {"trained": sgd_fit, "acted": not_applicable("an observation of the SGD model"),
                                "resolvable": Gate(se <= F2B_MAX_SE, f"standard error of the mean peak ratio {se:.2g} over "
                                                                     f"{len(pk)} seeds ({'≤' if se <= F2B_MAX_SE else '>'} "
                                                                     f"{F2B_MAX_SE:g})")},
           f"test/train ξ* peak ratio {r:.2f} ± {se:.2f} (s.e.; KDE on log ξ*)", f"peak ratio {r:.2f}",
           f"held if the mean test/train peak ratio lies in [{F2B_BAND[0]:.2f}, {F2B_BAND[1]:.2f}] (within a factor "
           f"√2 of the paper's 2); partly held if it exceeds {F2B_PARTLY:g}", {"peak_ratio": r, "se": se})
    return out

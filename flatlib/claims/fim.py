"""The FIM claims: scenarios I–III (which metric tracks test error), the regularizer (T1, T3), its
cost (TC, from the GPU benchmark) and ImageNet (T2, not run without the data)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flatlib.claims.rules import BENCH_TOLERANCE, Detectable, Fell, Fit, Moved, PairedDirection
from flatlib.claims.stats import mcnemar, mde_paired, mde_shared_test_set
from flatlib.claims.verdict import Claim, Claims, Gate, judge, not_applicable, not_run
from flatlib.experiments.fim_regularizer import is_gpu, regularized_phase, regularizer_configs
from flatlib.experiments.evaluation import correct_vector
from flatlib.experiments.fim_scenarios import METRIC_SHORT, METRICS, level_summary, rank_table
from flatlib.reference import paper_numbers

# --- thresholds, fixed before any outcome (each with its reason) --------------------------------
# the paper's premise: "all remain close-to-zero training losses"; train error ≤ 1 %
SCENARIO_FIT = Fit(99.0, what="train accuracy on the clean training rows",
                   why="the paper compares minima of close-to-zero training loss; for S1 the rows without the "
                       "confusion set")
SCENARIO_MOVED = Moved(1e-2, "the mean training loss (last vs first configuration)")
REG_FIT = Fit(95.0)
# the "did the regularizer act?": R_α of the final weights falls against the unregularized arm, and γ̂
# moves; the same 1 % relative floor as every other acted gate
REG_FELL = Fell(1e-2, "R_α of the final weights on the training set (with vs without)")
GAMMA_MOVED = Moved(1e-2, "γ̂ (with vs without)")
ERR = Detectable("points")
ALPHA = 0.05


def tracks(scenario: str) -> dict[str, bool]:
    """Which metric the paper says tracks test error in ``scenario`` (Fig. 2–4 captions)."""
    return {k.split(":", 1)[1]: bool(v) for k, v in paper_numbers(scenario).items() if k.startswith("tracks:")}


SCENARIO_RULE = (f"a metric tracks test error when Kendall τ(metric, test error) over all models is > 0 with p < "
                 f"{ALPHA:g}; held if each of the four metrics tracks or fails as the paper says, partly held if γ̂ "
                 "tracks but another metric disagrees with the paper, did not hold if γ̂ does not track")


def scenario_verdict(table: pd.DataFrame, target: str) -> str:
    """``SCENARIO_RULE`` on a rank table (columns ``metric``, ``tracks (ours)``)."""
    paper, ours = tracks(target), dict(zip(table["metric"], table["tracks (ours)"]))
    if not ours.get("log_det", False):
        return "did not hold"
    return "held" if all(ours.get(m) == paper[m] for m in paper) else "partly held"


PAIRED_DESIGN = ("paired by seed and by image: every model is scored on the same test images, so the image "
                 "noise of a difference is McNemar's, not that of two independent test sets; α = 0.05, 80 % power")


def scenario_resolvable(frame: pd.DataFrame, summ: pd.DataFrame) -> Gate:
    """The scenario's test error must vary across configurations: the span between the configurations with
    the highest and the lowest mean test error is at least the minimum detectable difference of that pair,
    paired by seed and by image (``stats.mde_shared_test_set``, in points)."""
    hi, lo = summ.loc[summ["test_error_mean"].idxmax()], summ.loc[summ["test_error_mean"].idxmin()]
    a = frame[frame["level"] == hi["level"]].set_index("seed")
    b = frame[frame["level"] == lo["level"]].set_index("seed")
    seeds = sorted(set(a.index) & set(b.index))
    spread = float(hi["test_error_mean"] - lo["test_error_mean"])
    mde = 100 * mde_shared_test_set([correct_vector(a.loc[s]) for s in seeds],
                                    [correct_vector(b.loc[s]) for s in seeds])
    ok = bool(np.isfinite(mde) and spread >= mde)
    return Gate(ok, f"test error spans {spread:.2f} points across configurations ({lo['level']} → {hi['level']}; "
                    f"{'≥' if ok else '<'} the minimum detectable difference {mde:.2f} points of that pair, "
                    f"{len(seeds)} seed pairs on the same {int(frame['n_test'].min())} test images)")


def scenario(frame: pd.DataFrame, p: Any) -> Claim:
    """FIM-S1/S2/S3: Kendall τ of each metric with test error over all models, against the paper's captions."""
    target = p.SCENARIO
    table = rank_table(frame, target)
    ours = dict(zip(table["metric"], table["tracks (ours)"]))
    verdict = scenario_verdict(table, target)
    summ = level_summary(frame)
    fit_col = "clean_train_error" if "clean_train_error" in frame else "train_error"
    trained = SCENARIO_FIT.gate({str(lv): list(100 - g[fit_col]) for lv, g in frame.groupby("level", sort=False)})
    first, last = summ.iloc[0], summ.iloc[-1]
    acted = SCENARIO_MOVED.gate([(last["train_loss_mean"] - first["train_loss_mean"]) / first["train_loss_mean"]])
    resolvable = scenario_resolvable(frame, summ)
    err = ", ".join(f"{r.level}: {r.test_error_mean:.2f}" for r in summ.itertuples())
    fit = ", ".join(f"{r.level}: {getattr(r, fit_col + '_mean'):.2f} % / {getattr(r, 'clean_train_loss_mean', r.train_loss_mean):.2g}"
                    for r in summ.itertuples())
    taus = "; ".join(f"{METRIC_SHORT[r['metric']]} τ = {r['Kendall τ (all models)']:+.2f} (p = {r['p-value']:.2g})"
                     for _, r in table.iterrows() if r["metric"] in METRICS)
    tracking = [METRIC_SHORT[m] for m in METRICS if ours.get(m)]
    claim = judge(target, verdict, gates={"trained": trained, "acted": acted, "resolvable": resolvable},
                  ours=f"{len(frame)} models; test error % by {p.LEVEL}: {err}; clean train error / loss: {fit}; "
                       f"Kendall τ vs test error: {taus}",
                  headline="tracks: " + (", ".join(tracking) or "none"),
                  rule=f"{SCENARIO_RULE}. Gates: {SCENARIO_FIT.text()}; {SCENARIO_MOVED.text()}; the test error must "
                       f"vary across configurations by at least the minimum detectable difference ({PAIRED_DESIGN})",
                  values={"rank_table": table.to_dict(orient="records"), "tracks": tracking})
    claim.record(p.profile)
    return claim


def _pairs(frame: pd.DataFrame, col: str) -> dict[tuple[str, str], pd.DataFrame]:
    return {k: g.pivot_table(index="seed", columns="regularizer", values=col).dropna()
            for k, g in frame.groupby(["dataset", "model"], sort=False)}


def regularizer(frame: pd.DataFrame, p: Any) -> Claims:
    """FIM-T1 (test error lower with the regularizer) and FIM-T3 (γ̂ lower), paired by seed per (dataset, model);
    T1 adds McNemar's exact test per seed on the shared test set."""
    out = Claims()
    t1, t3 = paper_numbers("FIM-T1"), paper_numbers("FIM-T3")
    fit = REG_FIT.gate({f"{d} {m} {r}": list(100 - g["train_error"])
                        for (d, m, r), g in frame.groupby(["dataset", "model", "regularizer"], sort=False)})
    reg = _pairs(frame, "fisher_reg")
    fell = REG_FELL.gate(np.concatenate([((g["with"] - g["without"]) / g["without"]).to_numpy() for g in reg.values()]))
    gam = _pairs(frame, "log_det")
    moved = GAMMA_MOVED.gate(np.concatenate([((g["with"] - g["without"]) / g["without"].abs()).to_numpy()
                                             for g in gam.values()]))
    acted = Gate(fell.passed and moved.passed, f"{fell.detail}; {moved.detail}")
    n_test = int(frame["n_test"].min())
    betas = ", ".join(f"{d} {m}: β = {g['beta'].dropna().iloc[0]:g}" for (d, m), g in frame.groupby(["dataset", "model"], sort=False))
    arms = frame.groupby(["dataset", "model", "regularizer"], sort=False)
    pull = ("; β‖∇R_α‖/‖∇L‖ at the final weights (median over training batches and seeds): "
            + ", ".join(f"{d} {m} {r} {g['grad_ratio'].median():.2g}" for (d, m, r), g in arms)
            if "grad_ratio" in frame else "")
    phases = {(d, m): regularized_phase(cfg) for d, m, reg_on, cfg in regularizer_configs(p) if reg_on}
    exposure = "; ".join(f"{d} {m}: {sum(n for _, n in ph)} regularized SGD steps ("
                         + ", ".join(f"{n} at lr {lr:.2g}" for lr, n in ph) + ")"
                         for (d, m), ph in phases.items() if (d, m) in set(zip(frame["dataset"], frame["model"])))
    for target, col, unit in (("FIM-T1", "test_error", "points"), ("FIM-T3", "log_det", "(γ̂)")):
        rule = PairedDirection("test error" if target == "FIM-T1" else "γ̂", "the regularizer", "none", -1)
        verdicts, parts, gates_ok, details, values = [], [], [], [], {}
        for (d, m), g in _pairs(frame, col).items():
            v, t = rule.decide(g["with"], g["without"])
            verdicts.append(v)
            values[f"{d}:{m}"] = t.__dict__
            sd = t.sd if np.isfinite(t.sd) else 0.0
            if target == "FIM-T1":
                key = f"cifar10:{m}" if f"cifar10:{m}:with" in t1 else "cifar10:resnet20"
                effect = t1[f"{key}:without"] - t1[f"{key}:with"]
                sub = frame[(frame["dataset"] == d) & (frame["model"] == m)]
                arms = {(r["seed"], r["regularizer"]): correct_vector(r) for _, r in sub.iterrows()}
                seeds = list(g.index)
                tests = [(seed, mcnemar(arms[seed, "with"], arms[seed, "without"])) for seed in seeds]
                mde = 100 * mde_shared_test_set([arms[s_, "with"] for s_ in seeds],
                                                [arms[s_, "without"] for s_ in seeds])
                values[f"{d}:{m}"]["mcnemar"] = [{"seed": int(sd_), "only_with": mc.only_a, "only_without": mc.only_b,
                                                  "p": mc.pvalue} for sd_, mc in tests]
                mc_txt = ", ".join(f"seed {sd_}: {mc.only_a} vs {mc.only_b} images right only with / only without, "
                                   f"p = {mc.pvalue:.2g}" for sd_, mc in tests)
                parts.append(f"{d} {m}: {g['without'].mean():.2f} → {g['with'].mean():.2f} %, with − without "
                             + t.describe("{:+.2f}") + f"; McNemar per seed: {mc_txt}")
            else:
                key = m if f"{m}:with" in t3 else "resnet20"
                rel = (t3[f"{key}:without"] - t3[f"{key}:with"]) / abs(t3[f"{key}:without"])
                effect = rel * abs(float(g["without"].mean()))
                mde = mde_paired(sd, len(g))
                change = (g["with"].mean() - g["without"].mean()) / abs(g["without"].mean())
                parts.append(f"{d} {m}: γ̂ (logits rescaled to norm {p.logit_norm:g} as in the official code, "
                             f"½ ln det) {g['without'].mean():.1f} → {g['with'].mean():.1f} ({change:+.1%}; the "
                             f"paper's {-rel:+.1%} for {key}), with − without " + t.describe("{:+.3g}"))
            gates_ok.append(np.isfinite(mde) and mde <= effect)
            design = PAIRED_DESIGN if target == "FIM-T1" else "one-sided paired t-test over seeds"
            details.append(f"{d} {m}: minimum detectable effect {mde:.3g} {unit} {'≤' if gates_ok[-1] else '>'} the "
                           f"paper's {effect:.3g} ({key}; {len(g)} seed pairs, {n_test} test points; {design})")
        verdict = ("held" if all(v == "held" for v in verdicts) else
                   "did not hold" if all(v == "did not hold" for v in verdicts) else "partly held")
        claim = judge(target, verdict, gates={"trained": fit, "acted": acted,
                                              "resolvable": Gate(all(gates_ok), "; ".join(details))},
                      ours=f"{len(p.seeds)} seeds, {n_test} test points, {betas} (validation hold-out of "
                           f"{p.validation} images), regularizer from the first lr drop ({exposure}){pull}: "
                           + "; ".join(parts),
                      headline=", ".join(verdicts) + " per pair",
                      rule=f"per (dataset, model): {rule.text()}; held if held for every pair, did not hold if for none. "
                           f"Gates: {REG_FIT.text()}; {REG_FELL.text()} and {GAMMA_MOVED.text()}; {ERR.text()}",
                      values=values)
        claim.record(p.profile)
        out.append(claim)
    return out


def timing(bench: pd.DataFrame, profile: str) -> Claim:
    """FIM-TC: the regularized step's cost relative to the plain step, from GPU benchmark results only."""
    paper = paper_numbers("FIM-TC")
    ratio = paper["with_ms"] / paper["without_ms"]
    fisher = bench[bench["candidate"] == "fisher"] if len(bench) else bench
    gpu = fisher[fisher["device"].map(is_gpu)] if len(fisher) else fisher
    if gpu is None or len(gpu) == 0:
        claim = not_run("FIM-TC", "needs a GPU result of benchmarks/fisher_reg.py (the M sub-batch passes are batched "
                                  "for a GPU; CPU ratios are not comparable)")
    else:
        ok = list(gpu["ratio to plain"] <= BENCH_TOLERANCE * ratio)
        verdict = "held" if all(ok) else "partly held" if any(ok) else "did not hold"
        device = gpu["device"].iloc[0]
        claim = judge("FIM-TC", verdict,
                      gates={"trained": not_applicable("a timing benchmark"), "acted": not_applicable("a timing benchmark"),
                             "resolvable": Gate(True, f"measured on a GPU ({device})")},
                      ours="; ".join(f"{r['model']}: {r['ratio to plain']:.2f}×" for _, r in gpu.iterrows()),
                      headline=" / ".join(f"{r['ratio to plain']:.2f}×" for _, r in gpu.iterrows()),
                      rule=f"held if the regularized step costs at most {BENCH_TOLERANCE:g}× the paper's ratio "
                           f"{ratio:.2f} for every GPU model, partly held if for some",
                      values={"rows": gpu.to_dict(orient="records")}, scale=f"GPU benchmark, {device}")
    claim.record(profile)
    return claim


def imagenet(why: str, profile: str) -> Claim:
    """FIM-T2: recorded as not run, with the reason."""
    claim = not_run("FIM-T2", why)
    claim.record(profile)
    return claim



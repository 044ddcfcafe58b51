"""The reproduction status, read back from the claim records in the results store (never typed by hand).

``status_frame`` gives one row per target with each profile's verdict side by side;
``status_html`` renders the page a reader scans: a tally per chapter, one compact row per ID
(badge, headline number beside the paper's, the reason when inconclusive), then the evidence,
rule and gates of every ID in collapsible sections.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from flatlib.claims.verdict import VERDICTS, badge
from flatlib.reference import targets
from flatlib.store import PROFILES, Entry, Store

PROFILE_PREFERENCE = ("paper", "default", "smoke")
CHAPTERS = {"FF": "Flatness is a false friend", "FIM": "Fisher determinant", "POF": "PoF"}
# the notebook page that shows each ID (its verdict cell carries the anchor ``#<id lowercased>``)
PAGES = {"FF-G": "ff_gedanken", "FF-F1": "ff_softmax", "FF-F2": "ff_mlp", "FF-F3": "ff_allcnnc",
         "FF-F4": "ff_preresnet", "FF-F5": "ff_wrn", "FF-F8": "ff_wrn", "FF-F6": "ff_adam", "FF-F7": "ff_adam",
         "FIM-S1": "fim_confusion", "FIM-S2": "fim_augmentation", "FIM-S3": "fim_batch_size",
         "FIM-T1": "fim_regularizer", "FIM-T3": "fim_regularizer", "FIM-TC": "fim_regularizer",
         "FIM-T2": "fim_imagenet", "POF-F1c": "pof_toy", "POF-F1d": "pof_toy", "POF-F2a": "pof_toy",
         "POF-F2b": "pof_toy", "POF-T1": "pof_images", "POF-F4": "pof_images", "POF-F5": "pof_images",
         "POF-F6": "pof_images", "POF-X1": "pof_images", "POF-T2": "pof_images"}
STYLE = "<style>#status-table{font-size:.82em}#status-table td:first-child{white-space:nowrap}</style>"


def anchor(target: str) -> str:
    return target.lower()


def latest(root: Path | str | None = None) -> dict[str, dict[str, Entry]]:
    """profile → target ID → its newest claim record."""
    out: dict[str, dict[str, Entry]] = {}
    for profile in PROFILES:
        newest: dict[str, Entry] = {}
        for e in Store(profile, root).entries("claim"):
            tid = e.config["id"]
            if tid not in newest or e.provenance["time"] > newest[tid].provenance["time"]:
                newest[tid] = e
        if newest:
            out[profile] = newest
    return out


def _scale(profile: str, e: Entry) -> str:
    return e.data.get("scale") or profile


def status_frame(root: Path | str | None = None) -> pd.DataFrame:
    """One row per target: chapter, ID, claim, the paper's value, the verdict and scale of the most paper-like
    record, every profile's verdict (``verdict: <profile>`` columns), our headline, the reason, evidence, rule,
    gates, date and commit."""
    records = latest(root)
    profiles = [p for p in PROFILE_PREFERENCE if p in records]
    rows = []
    for t in targets().itertuples():
        row = {"chapter": t.paper, "ID": t.id, "claim": t.claim, "paper's value": t.paper_value,
               "reference": t.source}
        found = [(p, records[p][t.id]) for p in profiles if t.id in records[p]]
        for p in profiles:
            e = records[p].get(t.id)
            row[f"verdict: {p}"] = e.data["verdict"] if e else "not run"
        if found:
            profile, e = found[0]
            d = e.data
            row.update({"verdict": d["verdict"], "scale": _scale(profile, e), "ours": d.get("headline", d["ours"]),
                        "reason": d.get("reason", ""), "evidence": d["ours"], "rule": d["rule"],
                        "gates": d.get("gates", {}), "date": e.provenance["time"][:10],
                        "commit": e.provenance.get("commit") or "—",
                        "scales": {p: _scale(p, records[p][t.id]) for p, _ in found}})
        else:
            row.update({"verdict": "not run", "scale": "—", "ours": "—", "reason": "no notebook has stored a verdict",
                        "evidence": "—", "rule": "", "gates": {}, "date": "—", "commit": "—", "scales": {}})
        rows.append(row)
    return pd.DataFrame(rows)


def first_reason(gates: dict, limit: int = 160) -> str:
    """The first failed gate as "name: detail", shortened for the compact row (the details section has all)."""
    for name, g in gates.items():
        if not g["passed"]:
            text = f"{name}: {g['detail']}"
            return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"
    return ""


def tally(frame: pd.DataFrame) -> pd.DataFrame:
    """Targets per chapter and verdict (the most paper-like record of each)."""
    t = pd.crosstab(frame["chapter"], frame["verdict"]).reindex(columns=list(VERDICTS), fill_value=0)
    t["total"] = t.sum(axis=1)
    return t.reindex([c for c in CHAPTERS if c in t.index])


def _e(x: object) -> str:
    return html.escape(str(x))


def status_html(frame: pd.DataFrame, page_prefix: str = "../notebooks/") -> str:
    """The status page's tables: tally (``#status-counts``), compact rows (``#status-table``), details."""
    counts = tally(frame)
    head = "".join(f"<th>{badge(v)}</th>" for v in VERDICTS)
    body = "".join(f"<tr><td>{_e(CHAPTERS[c])} ({c})</td>" + "".join(f"<td>{int(r[v])}</td>" for v in VERDICTS)
                   + f"<td>{int(r['total'])}</td></tr>" for c, r in counts.iterrows())
    out = [STYLE, f'<table id="status-counts"><thead><tr><th>chapter</th>{head}<th>total</th></tr></thead>'
                  f"<tbody>{body}</tbody></table>"]
    rows = []
    for r in frame.to_dict(orient="records"):
        link = f"{page_prefix}{PAGES[r['ID']]}.html#{anchor(r['ID'])}" if r["ID"] in PAGES else "#"
        claim = " ".join(str(r["claim"]).split()[:14])
        per_profile = [(c[len("verdict: "):], v) for c, v in r.items() if c.startswith("verdict: ")]
        verdicts = "<br>".join(f"{badge(v)} <small>{_e(r['scales'].get(p, p))}</small>" for p, v in per_profile) \
            or badge(r["verdict"])
        reason = _e(first_reason(r["gates"])) if r["verdict"] == "inconclusive" else ""
        paper = _e(r["paper's value"])
        rows.append(f'<tr><td><a href="{link}">{_e(r["ID"])}</a></td><td>{_e(claim)}</td><td>{verdicts}</td>'
                    f"<td>{_e(r['ours'])}</td><td>{paper}</td><td>{reason}</td></tr>")
    out.append('<table id="status-table"><thead><tr><th>ID</th><th>claim</th><th>verdict (scale)</th><th>ours</th>'
               "<th>paper's value</th><th>why inconclusive</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    return "".join(out)


def details_html(frame: pd.DataFrame) -> str:
    """Per ID, a collapsible section with the evidence, the rule and every gate."""
    parts = []
    for r in frame.itertuples():
        gates = "".join(f"<li>{'✓' if g['passed'] else '✗'} <b>{_e(n)}</b>: {_e(g['detail'])}</li>"
                        for n, g in r.gates.items())
        parts.append(f'<details id="details-{anchor(r.ID)}"><summary>{_e(r.ID)} {badge(r.verdict)} '
                     f"<small>{_e(r.scale)}</small></summary><p><b>Evidence.</b> {_e(r.evidence)}</p>"
                     f"<p><b>Rule.</b> {_e(r.rule)}</p><ul>{gates}</ul>"
                     f"<p><small>{_e(r.reference)}; recorded {_e(r.date)}, commit {_e(r.commit)}</small></p></details>")
    return "".join(parts)

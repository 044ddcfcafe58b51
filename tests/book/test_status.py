"""The status page is generated from the results store and says what the store says."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

from flatlib.pipeline.sphinxext import STATUS_DOC, read_status_last, status_always_outdated, unique_scripts
from flatlib.claims import GATE_NAMES, Gate, judge
from flatlib.claims.status import status_frame, status_html
from flatlib.reference import targets
from flatlib.store import Store

PROJECT = Path(__file__).resolve().parents[2]


class _Table(HTMLParser):
    """The cells (header row first) of the ``<table id=...>`` in a page, as whitespace-normalised text."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.depth, self.rows, self._cell = table_id, 0, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and (self.depth or dict(attrs).get("id") == self.table_id):
            self.depth += 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth -= 1
        elif self.depth and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table(page: Path, table_id: str) -> list[list[str]]:
    parser = _Table(table_id)
    parser.feed(page.read_text())
    assert parser.rows, f"{page} has no table with id {table_id!r}"
    return parser.rows


def as_text(frame) -> list[list[str]]:
    return [list(frame.columns)] + [[" ".join(str(v).split()) for v in row] for row in frame.itertuples(index=False)]


def test_rendered_status_page_agrees_with_results_store(built_html):
    """Every row of the built status table equals what status_html() renders from the store now."""
    page = built_html / f"{STATUS_DOC}.html"
    frame = status_frame(PROJECT / "results")
    rendered = table(page, "status-table")
    expected = [[" ".join(c.split()) for c in row] for row in _rows(status_html(frame))]
    assert [r[0] for r in rendered[1:]] == list(targets()["id"]), "one row per target, in the targets' order"
    stale = [f"{exp[0]}: page {got!r}, store {exp!r}" for got, exp in zip(rendered[1:], expected) if got != exp]
    assert not stale, "status page disagrees with the results store (rebuild with `make book`):\n" + "\n".join(stale)
    assert table(page, "status-counts")[1:] == [[" ".join(c.split()) for c in r] for r in _rows(status_html(frame),
                                                                                                  "status-counts")]


def _rows(fragment: str, table_id: str = "status-table") -> list[list[str]]:
    parser = _Table(table_id)
    parser.feed(fragment)
    return parser.rows[1:]


def _claim(target: str, verdict: str, ours: str = "x", passed: bool = True):
    return judge(target, verdict, gates={g: Gate(passed, f"{g} detail") for g in GATE_NAMES}, ours=ours,
                 headline=ours, rule="a rule")


def test_recorded_claim_shows_with_its_provenance(tmp_path):
    _claim("FF-G", "held", "λ1 12.1 ± 0.3").record("default", tmp_path)
    row = status_frame(tmp_path).set_index("ID").loc["FF-G"]
    assert (row["ours"], row["verdict"], row["scale"], row["rule"]) == ("λ1 12.1 ± 0.3", "held", "default", "a rule")
    entry = next(Store("default", tmp_path).entries("claim"))
    assert row["date"] == entry.provenance["time"][:10]
    assert row["commit"] == (entry.provenance["commit"] or "—")
    assert row["paper's value"] == targets().set_index("id").loc["FF-G", "paper_value"]
    assert row["reference"] == "Sec. 2" and row["gates"]["trained"] == {"passed": True, "detail": "trained detail"}


def test_targets_without_a_record_are_not_run(tmp_path):
    _claim("FF-G", "partly held").record("smoke", tmp_path)
    frame = status_frame(tmp_path)
    assert len(frame) == len(targets()) and frame["ID"].is_unique
    others = frame[frame["ID"] != "FF-G"]
    assert (others["verdict"] == "not run").all() and (others["ours"] == "—").all()
    assert frame.set_index("ID").loc["FF-G", "scale"] == "smoke"


def test_paper_profile_is_preferred_and_every_profile_is_shown(tmp_path):
    for profile, verdict in [("smoke", "held"), ("default", "partly held"), ("paper", "did not hold")]:
        _claim("FF-F1", verdict, profile).record(profile, tmp_path)
    _claim("FF-F2", "held", "s").record("smoke", tmp_path)
    _claim("FF-F2", "did not hold", "d", passed=False).record("default", tmp_path)
    frame = status_frame(tmp_path).set_index("ID")
    assert tuple(frame.loc["FF-F1", ["ours", "verdict"]]) == ("paper", "did not hold")
    assert tuple(frame.loc["FF-F1", ["verdict: paper", "verdict: default", "verdict: smoke"]]) == (
        "did not hold", "partly held", "held")
    assert tuple(frame.loc["FF-F2", ["ours", "scale", "verdict"]]) == ("d", "default", "inconclusive")
    assert frame.loc["FF-F2", "reason"] == "trained: trained detail; acted: acted detail; resolvable: resolvable detail"


def test_status_page_is_read_last_and_on_every_build():
    docs = ["book/intro", STATUS_DOC, "notebooks/a", "notebooks/b"]
    read_status_last(None, None, docs)
    assert docs == ["book/intro", "notebooks/a", "notebooks/b", STATUS_DOC]
    env = SimpleNamespace(found_docs={"book/intro", STATUS_DOC})
    assert status_always_outdated(None, env, set(), set(), set()) == [STATUS_DOC]
    assert status_always_outdated(None, SimpleNamespace(found_docs={"book/intro"}), set(), set(), set()) == []


def test_inline_scripts_registered_twice_are_written_once():
    from sphinx.builders.html._assets import _JavaScript

    body = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript("_static/a.js"), _JavaScript(None, body=body), _JavaScript("_static/b.js"),
               _JavaScript("", body=body), _JavaScript("_static/a.js"), _JavaScript("", body="other")]
    context = {"script_files": scripts}
    unique_scripts(None, "p", "page.html", context, None)
    assert context["script_files"] == [scripts[0], scripts[1], scripts[2], scripts[5]]

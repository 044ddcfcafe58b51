"""How a notebook's ``Params`` displays in a cell output: a real HTML table, values escaped."""
from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

from flatlib.params import Params


@dataclasses.dataclass
class _Demo(Params):
    """A stand-alone Params class (not registered as a notebook)."""

    epochs: int | None = None
    datasets: list[str] | None = None
    label: str | None = None
    lr: float | None = None


class _Cells(HTMLParser):
    """Every table row of an HTML fragment as a list of (tag, text) cells, plus the tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str]]] = []
        self.tags: list[str] = []
        self._cell: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = (tag, [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append((self._cell[0], "".join(self._cell[1])))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data)


def _parse(fragment: str) -> _Cells:
    parser = _Cells()
    parser.feed(fragment)
    parser.close()
    return parser


def test_params_display_as_an_html_table_with_one_row_per_field():
    p = _Demo(profile="smoke", epochs=3, datasets=["digits", "mnist"], label="a<b & 'c'", lr=0.1)
    out = p._repr_html_()
    cells = _parse(out)
    assert cells.tags[0] == "table" and "thead" in cells.tags and "tbody" in cells.tags
    assert cells.rows[0] == [("th", "parameter"), ("th", "value")]
    body = {row[0][1]: row[1][1] for row in cells.rows[1:]}
    assert all(tag == "td" for row in cells.rows[1:] for tag, _ in row)
    # one row per field, in field order, each value shown as its repr (so a string keeps its quotes)
    assert list(body) == ["profile", "epochs", "datasets", "label", "lr"]
    assert body == {"profile": "'smoke'", "epochs": "3", "datasets": "['digits', 'mnist']",
                    "label": repr("a<b & 'c'"), "lr": "0.1"}


def test_params_html_escapes_values_and_has_no_markdown_table():
    out = _Demo(label="</td><script>alert(1)</script>|---|")._repr_html_()
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "|---|" in out  # shown as text inside a cell, not parsed as a Markdown table: no Markdown repr at all
    assert not hasattr(_Demo(), "_repr_markdown_")
    # the escaped value is one cell: the row still has exactly two cells
    rows = _parse(out).rows
    assert all(len(row) == 2 for row in rows)


def test_unset_values_show_as_none_not_as_missing_value_markers():
    out = _Demo()._repr_html_()
    values = [row[1][1] for row in _parse(out).rows[1:]]
    assert values == ["None"] * 5
    assert "NaN" not in out and "&lt;NA&gt;" not in out

"""The built book as a reader sees it, in headless Chromium, with no network.

One pass over every page of ``_build/html`` (see ``book_browser.check_site``), and one pass
over a deliberately broken copy to show that each kind of damage is reported.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import matplotlib.image as mpimg

from book_browser import NO_FIGURE_PAGES, check_site

STATUS = "book/status.html"
MATH = '<p><span class="math notranslate nohighlight">\\(\\lambda_1 = \\max_i \\lambda_i\\)</span></p>'


def _chapters(pages: list[str]) -> list[str]:
    """Notebook pages that must show a figure."""
    return [p for p in pages if p.startswith("notebooks/") and p not in NO_FIGURE_PAGES]


def _shows_a_picture(png: Path) -> bool:
    """A screenshot that is not blank: large enough and with real contrast."""
    pixels = mpimg.imread(png)[..., :3]
    return min(pixels.shape[:2]) >= 100 and float(pixels.std()) > 0.05


def test_every_page_displays_offline_with_figures_and_math(built_html, screenshot_dir):
    shutil.rmtree(screenshot_dir, ignore_errors=True)
    report = check_site(built_html, screenshot_dir)
    assert not report.problems, "the built book is broken in the browser:\n" + "\n".join(report.problems)
    assert {"index.html", STATUS} <= set(report.pages) and _chapters(report.pages)
    shots = {p.name: p for p in report.screenshots}
    expected = ["book-status.png"] + [p.removesuffix(".html").replace("/", "-") + "-figure.png"
                                      for p in _chapters(report.pages)]
    assert set(expected) <= set(shots), f"missing screenshots: {set(expected) - set(shots)}"
    blank = [name for name in expected if not _shows_a_picture(shots[name])]
    assert not blank, f"blank screenshots: {blank}"


def _insert(page: Path, html_text: str) -> None:
    """Append ``html_text`` to the article of a built page."""
    text = page.read_text()
    assert "</article>" in text, f"{page} has no <article>"
    page.write_text(text.replace("</article>", html_text + "</article>", 1))


def test_checker_reports_a_broken_copy_of_the_book(built_html, tmp_path):
    """Break a copy of the book in nine ways a reader would notice; each must be reported."""
    site = tmp_path / "html"
    shutil.copytree(built_html, site)
    chapters = _chapters(sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")))
    first, last = site / chapters[0], site / chapters[-1]
    # 1. an image link that points nowhere
    text = first.read_text()
    img = re.search(r'<img[^>]* src="([^"]+)"', text).group(1)
    first.write_text(text.replace(f'src="{img}"', 'src="../_images/missing.png"', 1))
    # 2. a chapter whose notebook output (every figure) is gone
    if last != first:
        last.write_text(re.sub(r"<img[^>]*>", "", last.read_text()))
    # 3. a page that needs the network, 4. math with no MathJax to typeset it
    status = site / STATUS
    status.write_text(status.read_text().replace(
        "</article>", f'{MATH}<img src="https://example.org/figure.png"></article>', 1))
    # 5. an internal link to a page that does not exist
    (site / "book" / "howto.html").unlink()
    # 6. a Markdown table that reached the page as one paragraph of pipes (smart quotes make --- a dash)
    _insert(site / "book" / "ff.html", "<p>| parameter | value | |\u2014|\u2014| | profile | 'default' |</p>"
                                       "<p>| a | b |\n| --- | --- |</p>")
    # 7. pandas' missing-value markers in table cells
    _insert(site / "book" / "fim.html", "<table><tr><td>SAM@E+\u0394</td><td>&lt;NA&gt;</td><td>NaN \u00b1 nan</td></tr></table>")
    _insert(site / "book" / "fim.html", "<table><tr><td>FIM-T1</td><td>2.41 \u00b1 NaN %</td></tr></table>")
    # 8. unresolved citations: what sphinxcontrib-bibtex renders for an unknown key (a citation with no
    #    link), and a role that was never parsed
    pof = site / "book" / "pof.html"
    text, cites = pof.read_text(), r'<span class="bibtex-citation"[^>]*>.*?</span>'
    assert re.search(cites, text, re.S), "book/pof.html cites nothing: the bibliography is not in use"
    pof.write_text(re.sub(cites, '<span class="bibtex-citation" id="nokey">[]</span>', text, count=1, flags=re.S))
    _insert(site / "book" / "study.html", "<p>as shown by {cite:p}`nokey2000`</p>")
    # 9. a status row whose verdict badge is gone
    text = status.read_text()
    table = re.search(r'<table[^>]*id="status-table".*?</table>', text, re.S)
    assert table, "the status page has no table with id status-table"
    row = re.search(r"<tr[^>]*>\s*<td[^>]*>(.*?)</td>.*?</tr>", table.group(), re.S)
    first_id = " ".join(re.sub(r"<[^>]+>", "", row.group(1)).split())
    stripped = re.sub(r'<span class="verdict-badge[^"]*"[^>]*>.*?</span>', "", row.group(), flags=re.S)
    status.write_text(text.replace(row.group(), stripped, 1))

    problems = "\n".join(check_site(site).problems)

    assert re.search(rf"{chapters[0]}: image did not load: \S*/_images/missing\.png", problems)
    if last != first:
        assert f"{chapters[-1]}: chapter shows no figure" in problems
    assert f"{STATUS}: needs the network: https://example.org/figure.png" in problems
    assert f"{STATUS}: math not typeset" in problems or f"{STATUS}: raw TeX in the text" in problems
    assert re.search(r"book/intro\.html: broken link book/howto\.html\S*: HTTP 404", problems)
    assert "book/ff.html: raw table markup in the text: '|\u2014|'" in problems
    assert "book/ff.html: raw table markup in the text: '| --- |'" in problems
    assert "book/fim.html: missing value in a table cell: '<NA>'" in problems
    assert "book/fim.html: missing value in a table cell: 'NaN'" in problems
    assert "book/fim.html: missing value in a table cell: 'nan'" in problems
    assert "book/fim.html: missing value in a table cell: 'NaN' in '2.41 \u00b1 NaN %'" in problems
    assert "book/pof.html: unresolved citation: '[]' links to no reference" in problems
    assert "book/study.html: unresolved citation: raw '{cite:p}' in the text" in problems
    assert f"{STATUS}: status row {first_id!r} has no verdict badge" in problems


MINIMAL_STATUS = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>status</title></head><body><article>
<table id="status-table"><thead><tr><th>ID</th><th>verdict</th><th>ours</th></tr></thead><tbody>
<tr><td><a href="#FF-F1">FF-F1</a></td><td><span class="verdict-badge verdict-held">held</span></td><td>None</td></tr>
<tr><td>FIM-S1</td><td><span class="verdict-badge verdict-partly-held">partly held</span>
    <span class="verdict-badge verdict-inconclusive">inconclusive</span></td><td>\u2014</td></tr>
<tr><td>POF-T1</td><td>did not hold</td><td>2.41</td></tr>
<tr><td>POF-T2</td><td><span class="verdict-badge verdict-maybe">maybe</span></td><td>1.17</td></tr>
</tbody></table>
<p id="FF-F1">A resolved citation <span class="bibtex-citation">[<a href="#ref">Sato <em>et al.</em>, 2022</a>]</span>,
a real table of nanometres | pipes | and a 2.50 \u2013 2.41 range; <code>| --- |</code> and <code>{cite}</code> in code.</p>
<p id="ref">Reference.</p>
<table><tr><th>parameter</th><th>value</th></tr><tr><td><code>lr</code></td><td><code>None</code></td></tr>
<tr><td>Nan Xu</td><td>nanmean</td></tr><tr><td>when the loss became NaN or Inf</td><td>\u2014</td></tr></table>
</article></body></html>
"""


def test_checker_tells_a_badged_status_row_from_a_bare_one(tmp_path):
    """On a small hand-written site: rows with a badge pass, a bare row and an unknown verdict are
    reported, and things that only look like the defects (None, a dash, 'nanometres', a linked
    citation, markup inside code) are not."""
    (tmp_path / "book").mkdir()
    (tmp_path / "index.html").write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>i</title></head>'
                                         '<body><article><a href="book/status.html">status</a></article></body></html>')
    (tmp_path / STATUS).write_text(MINIMAL_STATUS)

    problems = check_site(tmp_path).problems

    assert problems == [f"{STATUS}: status row 'POF-T1' has no verdict badge",
                        f"{STATUS}: status row 'POF-T2': verdict badge with an unknown verdict 'maybe'"]
    (tmp_path / STATUS).write_text(MINIMAL_STATUS.replace('id="status-table"', 'id="other"'))
    assert check_site(tmp_path).problems == [f'{STATUS}: no status table (an element with id="status-table")']

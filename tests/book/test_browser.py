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


def test_checker_reports_a_broken_copy_of_the_book(built_html, tmp_path):
    """Break a copy of the book in five ways a reader would notice; each must be reported."""
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

    problems = "\n".join(check_site(site).problems)

    assert re.search(rf"{chapters[0]}: image did not load: \S*/_images/missing\.png", problems)
    if last != first:
        assert f"{chapters[-1]}: chapter shows no figure" in problems
    assert f"{STATUS}: needs the network: https://example.org/figure.png" in problems
    assert f"{STATUS}: math not typeset" in problems or f"{STATUS}: raw TeX in the text" in problems
    assert re.search(r"book/intro\.html: broken link book/howto\.html\S*: HTTP 404", problems)

"""Drive headless Chromium through a built book and report what a reader would see broken.

Chromium (Debian's ``chromium``) is controlled over the Chrome DevTools Protocol with the
``websocket-client`` package: no browser download, no driver. ``check_site`` serves a built
``_build/html`` on 127.0.0.1, opens every page, and returns one line per problem: console
errors and failed loads, requests that leave the machine (the book must display offline),
images that did not load, internal links (and their #anchors) that do not resolve, math left
untypeset after MathJax finished, chapter pages (built from ``notebooks/``) without a figure,
raw Markdown table markup in the text (a table that did not render), missing-value markers
(``<NA>``, ``NaN``) in table cells, unresolved citations, and rows of the status table without a
verdict badge. It also writes screenshots of the status page and of the first figure of every page.
"""
from __future__ import annotations

import base64
import functools
import html
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import websocket

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--mute-audio"]
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PAGE_TIMEOUT = 120.0  # seconds for one page to load, typeset its math and load its images

# Run in the page once it has loaded: wait for MathJax's first typeset and for every image,
# then report what the reader sees. Text inside code, MathJax's own output and scripts is
# skipped when looking for raw TeX; any element Sphinx marked as math must hold MathJax output.
INSPECT_JS = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const images = [...document.images];
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => (img.complete ? null :
      new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); }))));
  await document.fonts.ready;
  const article = document.querySelector("article") || document.body;
  const clone = article.cloneNode(true);
  clone.querySelectorAll("pre, code, script, style, textarea, mjx-container, mjx-assistive-mml")
       .forEach(el => el.remove());
  const figures = [...article.querySelectorAll(".cell_output img, figure img")];
  const squash = el => el.textContent.replace(/\s+/g, " ").trim();
  const statusTable = document.getElementById("status-table");
  return {
    images: images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth})),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    text: clone.textContent,
    untypeset: [...article.querySelectorAll(".math")].filter(el => !el.querySelector("mjx-container"))
                 .map(el => el.textContent.slice(0, 80)),
    figures: figures.length,
    cells: [...article.querySelectorAll("td")].map(squash),
    citations: [...article.querySelectorAll(".bibtex-citation")]
                 .map(el => ({text: squash(el), links: el.querySelectorAll("a[href]").length})),
    statusRows: statusTable === null ? null :
      [...statusTable.querySelectorAll("tr")].filter(tr => tr.querySelector("td")).map(tr => ({
        id: squash(tr.querySelector("td")),
        badges: [...tr.querySelectorAll("span.verdict-badge")]
                  .map(b => ({classes: [...b.classList], word: squash(b)})),
      })),
  };
})()
"""
REFRESH = re.compile(r'<meta http-equiv="refresh" content="\d+;\s*url=([^"]+)"', re.IGNORECASE)
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\$[^$\n]*[\\^_][^$\n]*\$")
# A Markdown table that reached the page as text: a delimiter row such as |---|, | --- |, |:--|, or
# the |—| / |–| that smart quotes make of it.
RAW_TABLE = re.compile(r"\|\s*:?[-\u2013\u2014]+:?\s*\|")
# pandas' and numpy's missing-value markers shown to the reader in a table cell ("None" is fine).
# <NA> always; NaN/nan/NaT in a value cell (numbers, markers, symbols, units), not in a cell of prose
# such as "the loss became NaN or Inf".
MISSING_VALUE = re.compile(r"<NA>|(?<![\w.])(?:NaN|nan|NaT)(?![\w])")
PROSE_WORD = re.compile(r"[^\W\d_]{3,}")
NOT_PROSE = frozenset({"NaN", "nan", "NaT", "inf", "Inf"})
# A citation role or bibliography directive that was never parsed (no bibtex extension, or a
# notebook cell that is not MyST).
RAW_CITATION = re.compile(r"\{(?:cite(?::\w+)?|bibliography)\}")
# The words a status row's verdict badge may carry (<span class="verdict-badge verdict-...">WORD</span>).
VERDICTS = ("held", "partly held", "did not hold", "inconclusive", "not run")


class DevTools:
    """A minimal Chrome DevTools Protocol session on one page target."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` and return its result, keeping every event that arrives meanwhile."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"{method}: no answer within {self.timeout} s")

    def wait_event(self, name: str, since: int = 0) -> dict[str, Any]:
        """Block until the event ``name`` arrives (or has arrived, at index ``since`` or later of ``events``)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for ev in self.events[since:]:
                if ev["method"] == name:
                    return ev
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name} within {self.timeout} s")
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript (awaiting a returned promise) and return its JSON value."""
        res = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True,
                        timeout=self.timeout * 1000)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {}).get('description', '')}")
        return res["result"].get("value")

    def close(self) -> None:
        self.ws.close()


@contextmanager
def chromium(timeout: float = PAGE_TIMEOUT) -> Iterator[DevTools]:
    """Start headless Chromium with a fresh profile and yield a DevTools session on a blank page."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: run `make chromium` (installs Debian's chromium)")
    profile = Path(tempfile.mkdtemp(prefix="flatlib-chromium-"))
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"], timeout)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                tools.send(f"{domain}.enable")
            tools.send("Emulation.setDeviceMetricsOverride", **VIEWPORT)
            yield tools
        finally:
            tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 at a free port (in a thread); yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SiteReport:
    """What ``check_site`` saw: problems (empty when the book displays as it should) and files written."""

    pages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


def _page_problems(events: list[dict[str, Any]], base: str) -> list[str]:
    """Console errors, uncaught exceptions, failed loads and off-machine requests among CDP events."""
    host = urllib.parse.urlsplit(base).netloc
    out = []
    for ev in events:
        m, p = ev["method"], ev["params"]
        if m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            out.append("console error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                    for a in p["args"]))
        elif m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(f"uncaught exception: {d.get('exception', {}).get('description', d.get('text'))}")
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error" \
                and p["entry"].get("url") != base + "favicon.ico":  # the browser's own request, not the page's
            out.append(f"console error: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
        elif m == "Network.requestWillBeSent":
            parts = urllib.parse.urlsplit(p["request"]["url"])
            if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != host:
                out.append(f"needs the network: {p['request']['url']}")
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            out.append(f"failed to load a resource: {p.get('errorText')}")
    return out


class _LinkChecker:
    """HTTP status and element ids of served pages, fetched once each."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, set[str]]] = {}

    def __call__(self, url: str) -> str | None:
        """None if ``url`` (with its #anchor) resolves on the served site, else why not."""
        page, _, anchor = url.partition("#")
        if page not in self._cache:
            try:
                with urllib.request.urlopen(page, timeout=30) as r:
                    body = r.read().decode("utf-8", "replace") if page.endswith((".html", "/")) else ""
                    ids = {html.unescape(i) for i in re.findall(r'\bid="([^"]+)"', body)}
                    self._cache[page] = (r.status, ids)
            except urllib.error.HTTPError as err:
                self._cache[page] = (err.code, set())
        status, ids = self._cache[page]
        if status != 200:
            return f"HTTP {status}"
        anchor = urllib.parse.unquote(anchor)
        if anchor and page.endswith((".html", "/")) and anchor not in ids:
            return f"no element with id {anchor!r}"
        return None


def _screenshot(tools: DevTools, path: Path, clip: dict[str, float]) -> None:
    shot = tools.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={**clip, "scale": 1})
    path.write_bytes(base64.b64decode(shot["data"]))


def _figure_clip(tools: DevTools) -> dict[str, float] | None:
    """The page coordinates of the first figure (with its caption, if any) in the article."""
    return tools.evaluate(r"""(() => {
      const img = document.querySelector("article .cell_output img, article figure img");
      if (!img) return null;
      const box = img.closest("figure") || img.closest(".cell_output") || img;
      box.scrollIntoView({block: "start"});
      const r = box.getBoundingClientRect();
      return {x: r.left + scrollX, y: r.top + scrollY, width: Math.max(r.width, 1), height: Math.max(r.height, 1)};
    })()""")


def _screenshots(tools: DevTools, rel: str, figures: int, status_page: str, folder: Path) -> list[Path]:
    """Write the whole status page, and the first figure of any page that has one, as PNGs."""
    stem, written = rel.removesuffix(".html").replace("/", "-"), []
    if rel == status_page:
        height = tools.evaluate("document.documentElement.scrollHeight")
        _screenshot(tools, shot := folder / f"{stem}.png", {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
        written.append(shot)
    if figures and (clip := _figure_clip(tools)):
        _screenshot(tools, shot := folder / f"{stem}-figure.png", clip)
        written.append(shot)
    return written


def _content_problems(seen: dict[str, Any], is_status_page: bool) -> list[str]:
    """What a reader would see wrong in the page's text: raw table markup, missing-value markers in
    table cells, unresolved citations and (on the status page) status rows without a verdict badge."""
    out = [f"raw table markup in the text: {m.group()!r}" for m in RAW_TABLE.finditer(seen["text"])][:5]
    out += [f"missing value in a table cell: {m.group()!r} in {cell[:80]!r}"
            for cell in seen["cells"] for m in MISSING_VALUE.finditer(cell)
            if m.group() == "<NA>" or set(PROSE_WORD.findall(cell)) <= NOT_PROSE][:5]
    # sphinxcontrib-bibtex renders a key it cannot find as a citation with no link ("[]" or nothing)
    out += [f"unresolved citation: {c['text']!r} links to no reference" for c in seen["citations"] if not c["links"]][:5]
    out += [f"unresolved citation: raw {m.group()!r} in the text" for m in RAW_CITATION.finditer(seen["text"])][:5]
    if is_status_page:
        rows = seen["statusRows"]
        if rows is None:
            out.append('no status table (an element with id="status-table")')
        elif not rows:
            out.append("the status table has no rows")
        for row in rows or []:
            badges = [b for b in row["badges"]
                      if any(c.startswith("verdict-") and c != "verdict-badge" for c in b["classes"])]
            if not badges:
                out.append(f"status row {row['id']!r} has no verdict badge")
            out += [f"status row {row['id']!r}: verdict badge with an unknown verdict {b['word']!r}"
                    for b in badges if b["word"] not in VERDICTS]
    return out


# Notebook pages that show no figure by design: FIM-T2 needs down-sampled ImageNet, which no profile
# below `paper` has; without it the page explains why it was skipped instead of drawing a figure.
NO_FIGURE_PAGES = frozenset({"notebooks/fim_imagenet.html"})


def check_site(root: Path, screenshot_dir: Path | None = None, status_page: str = "book/status.html",
               chapter_prefix: str = "notebooks/") -> SiteReport:
    """Open every page of the built book at ``root`` in headless Chromium and report problems.

    Pages built from notebooks (under ``chapter_prefix``, except ``NO_FIGURE_PAGES``) must show at
    least one figure; every row of the status page's ``#status-table`` must carry a verdict badge
    (``<span class="verdict-badge verdict-...">WORD</span>``, WORD one of ``VERDICTS``); the status
    page and the first figure of every page are screenshotted into ``screenshot_dir``.
    """
    report = SiteReport(pages=sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                                     if not p.relative_to(root).parts[0].startswith("_")))
    if status_page not in report.pages:
        report.problems.append(f"{status_page}: missing from the built book")
    if screenshot_dir is not None:
        screenshot_dir.mkdir(parents=True, exist_ok=True)
    links = _LinkChecker()
    with serve(root) as base, chromium() as tools:
        for rel in report.pages:
            url = base + rel
            if redirect := REFRESH.search((root / rel).read_text(errors="replace")):
                # a redirect stub (the book's index.html): its target must exist; the target is a page itself
                target = urllib.parse.urljoin(url, html.unescape(redirect.group(1)))
                if why := links(target):
                    report.problems.append(f"{rel}: broken redirect to {target[len(base):]}: {why}")
                continue
            tools.events.clear()
            tools.send("Page.navigate", url=url)
            tools.wait_event("Page.loadEventFired")
            seen = tools.evaluate(INSPECT_JS)
            shots = _screenshots(tools, rel, seen["figures"], status_page, screenshot_dir) if screenshot_dir else []
            # leave the page, so that its late events (console messages, failed loads) are counted here
            mark = len(tools.events)
            tools.send("Page.navigate", url="about:blank")
            tools.wait_event("Page.loadEventFired", since=mark)
            problems = _page_problems(tools.events, base)
            problems += [f"image did not load: {im['src']}" for im in seen["images"] if im["width"] == 0]
            for link in sorted(set(seen["links"])):
                if link.startswith(base) and (why := links(link)):
                    problems.append(f"broken link {link[len(base):]}: {why}")
            problems += [f"math not typeset: {t!r}" for t in seen["untypeset"]]
            problems += [f"raw TeX in the text: {m.group()!r}" for m in RAW_TEX.finditer(seen["text"])][:5]
            problems += _content_problems(seen, rel == status_page)
            if rel.startswith(chapter_prefix) and rel not in NO_FIGURE_PAGES and seen["figures"] == 0:
                problems.append("chapter shows no figure (a notebook output is missing)")
            report.problems += [f"{rel}: {p}" for p in dict.fromkeys(problems)]
            report.screenshots += shots
    return report


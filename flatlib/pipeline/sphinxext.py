"""Sphinx extension for the flatlib book (listed in ``_config.yml``).

- The status page (``book/status``) is re-read on every build and read last, so that it
  executes after every chapter notebook of the same build has stored its verdict (Sphinx
  otherwise reads only changed documents, in alphabetical order: ``book/`` before ``notebooks/``).
- Inline scripts that Sphinx 7.4 emits twice (an extension's ``add_js_file(None, body=...)``
  registered once with filename None and once with ``""``) are written once: sphinx-thebe's
  doubled ``const THEBE_JS_URL`` is a SyntaxError on every page.
"""
from __future__ import annotations

from typing import Any

STATUS_DOC = "book/status"


def status_always_outdated(app: Any, env: Any, added: set[str], changed: set[str],
                           removed: set[str]) -> list[str]:
    """``env-get-outdated``: re-read the status page, since the results store changes without it."""
    return [STATUS_DOC] if STATUS_DOC in env.found_docs else []


def read_status_last(app: Any, env: Any, docnames: list[str]) -> None:
    """``env-before-read-docs``: move the status page to the end of the reading order."""
    if STATUS_DOC in docnames:
        docnames.remove(STATUS_DOC)
        docnames.append(STATUS_DOC)


def unique_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """``html-page-context``: drop repeated script entries (same file or body, same attributes)."""
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-get-outdated", status_always_outdated)
    app.connect("env-before-read-docs", read_status_last)
    app.connect("html-page-context", unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

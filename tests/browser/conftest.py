"""Browser tests: the rendered report in a real headless Chromium (Debian's ``chromium``).

Run in their own pytest process (``make test`` does). Playwright drives the browser
found at ``$CONVBENCH_CHROMIUM`` or ``chromium`` on PATH; no browser is downloaded.
Screenshots of every page land in ``tests/browser/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from convbench.report import render_site
from tests.report_data import XSS, make_run

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

#: Flags that keep Chromium from reaching the network or needing a sandbox or a GPU.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    path = os.environ.get("CONVBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium: install Debian's `chromium` (make test does: apt-get install -y chromium) or set CONVBENCH_CHROMIUM")
    return path


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of synthetic runs (every status, two backends, a workload and a suite
    named <script>alert(1)</script>) with a comparison page."""
    root = tmp_path_factory.mktemp("runs")
    a = make_run(root / "a", host="host-a")
    b = make_run(root / "b", host="host-b", slowdown=1.3, seed=1, started="2026-01-02T00:00:00+00:00")
    make_run(root / "x", suite=XSS, failures=False, started="2026-01-03T00:00:00+00:00")
    out = tmp_path_factory.mktemp("site") / "report"
    render_site([root], out, compare=([a], [b]))
    return out


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900}, offline=True,
        )  # fmt: skip
        yield context
        context.close()


class Page:
    """A page opened from the site, with every console error, page error, dialog and
    request outside the site recorded."""

    def __init__(self, context, site: Path, name: str) -> None:  # noqa: ANN001
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.outside: list[str] = []
        self.page = context.new_page()
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: None if r.url.startswith(("file://", "data:")) else self.outside.append(r.url))
        self.page.goto((site / name).as_uri(), wait_until="load")

    def _dialog(self, dialog) -> None:  # noqa: ANN001
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def open_page(browser, site: Path) -> Iterator:  # noqa: ANN001
    opened: list[Page] = []

    def opener(name: str) -> Page:
        page = Page(browser, site, name)
        opened.append(page)
        return page

    yield opener
    for page in opened:
        page.close()

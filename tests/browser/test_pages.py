"""The report in headless Chromium: pages load cleanly, plots draw, tables sort and filter,
hostile strings stay text, and every page is screenshotted (tests/browser/artifacts/)."""

from __future__ import annotations

import math
from pathlib import Path

from tests.report_data import XSS


def column_values(page, table: str, column: str) -> list[str]:  # noqa: ANN001
    """The data-sort keys of ``column`` in ``table``'s visible rows, top to bottom."""
    return page.evaluate(
        """([table, column]) => {
            const t = document.getElementById(table);
            const heads = [...t.tHead.rows[0].cells].map(th => th.textContent.trim());
            const i = heads.indexOf(column);
            if (i < 0) throw new Error("no column " + column + " in " + heads);
            return [...t.tBodies[0].rows].filter(r => !r.hidden).map(r => r.cells[i].getAttribute("data-sort"));
        }""",
        [table, column],
    )


def plot_marks(page) -> dict[str, int]:  # noqa: ANN001
    """Per plot div id: the number of drawn marks (bars and points) in its SVG."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("div.plot-target")].map(div => [
            div.id, div.querySelectorAll("svg.main-svg g.trace .point, svg.main-svg g.trace path.point").length
        ]))"""
    )


def test_every_page_loads_without_console_errors_or_outside_requests(open_page, site: Path) -> None:  # noqa: ANN001
    names = sorted(p.name for p in site.glob("*.html"))
    assert {"index.html", "suite-synthetic.html", "run-a.html", "compare.html"} <= set(names) and len(names) == 7
    for name in names:
        page = open_page(name)
        page.page.wait_for_timeout(100)
        shot = page.screenshot(name.removesuffix(".html"))
        assert shot.stat().st_size > 10_000, name
        assert page.errors == [], name
        assert page.outside == [], f"{name}: the report must work offline"
        assert page.dialogs == [], name
        assert page.page.locator("h1").count() == 1, name
        undrawn = page.page.evaluate("""() => [...document.querySelectorAll("div.plot-target")]
            .filter(div => !div.querySelector("svg.main-svg g.trace")).map(div => div.id)""")
        assert undrawn == [], f"{name}: plots did not draw"


def test_plots_draw_with_marks_and_hover_names_the_case(open_page) -> None:  # noqa: ANN001
    page = open_page("suite-synthetic.html")
    page.page.wait_for_selector("div.plot-target svg.main-svg")
    marks = plot_marks(page.page)
    assert set(marks) == {
        "plot-2-speedup-1", "plot-2-speedup-2", "plot-2-frameworks-1", "plot-2-frameworks-2", "plot-2-modes-1", "plot-2-roofline-1",
    }  # fmt: skip
    assert all(n > 0 for n in marks.values()), marks
    # Bars are real shapes, not empty paths.
    height = page.page.evaluate("""() => document.querySelector("#plot-2-speedup-1 g.trace .point path").getBBox().height""")
    assert height > 1
    # Hover the first bar of the first speedup plot: the tooltip names the case.
    page.page.evaluate("""() => Plotly.Fx.hover("plot-2-speedup-1", [{curveNumber: 0, pointNumber: 1}])""")
    tip = page.page.evaluate("""() => document.querySelector("#plot-2-speedup-1 .hoverlayer").textContent""")
    assert XSS in tip and "diagonalwise · torch · cpu · inference" in tip and "speedup 0.6" in tip
    assert page.errors == [] and page.dialogs == []


def test_hostile_names_render_as_text_in_tables_and_plots(open_page) -> None:  # noqa: ANN001
    page = open_page("suite-synthetic.html")
    page.page.wait_for_selector("div.plot-target svg.main-svg")
    cells = page.page.locator("#cases-2 td", has_text=XSS)
    assert cells.count() > 0
    ticks = page.page.evaluate(
        """() => [...document.querySelectorAll("#plot-2-speedup-1 .xtick text")].map(t => t.textContent)"""
    )
    assert XSS in ticks, ticks
    assert page.page.locator("script:not([src]):not([type='application/json'])").count() == 0
    assert page.dialogs == []
    index = open_page("index.html")
    assert index.page.get_by_role("link", name=f"Suite {XSS}").count() == 1
    assert index.dialogs == []


def test_table_sorts_on_click_and_filters(open_page) -> None:  # noqa: ANN001
    page = open_page("suite-synthetic.html")
    header = page.page.locator("#cases-2 thead th", has_text="median").first
    before = column_values(page.page, "cases-2", "median")
    header.click()
    asc = column_values(page.page, "cases-2", "median")
    numbers = [float(v) for v in asc if v is not None]
    missing = [v for v in asc if v is None]
    assert numbers == sorted(numbers) and numbers != [float(v) for v in before if v is not None]
    assert asc[len(numbers):] == missing and missing, "untimed cases sort last"
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    desc = [float(v) for v in column_values(page.page, "cases-2", "median") if v is not None]
    assert desc == sorted(numbers, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    page.screenshot("suite-sorted")
    # Filter: words, then status.
    page.page.fill(".table-tools[data-for='cases-2'] .filter-text", "dw_a training")
    rows = page.page.locator("#cases-2 tbody tr:not([hidden])")
    assert rows.count() == 2 * (4 + 2)  # runs a and b: cpu 2 backends x 2 variants, cuda 2 variants
    assert all("dw_a" in t and "training" in t for t in rows.all_inner_texts())
    page.page.fill(".table-tools[data-for='cases-2'] .filter-text", "")
    page.page.select_option(".table-tools[data-for='cases-2'] .filter-status", "error")
    texts = page.page.locator("#cases-2 tbody tr:not([hidden])").all_inner_texts()
    assert texts and all("error" in t and "RuntimeError" in t for t in texts)
    count = page.page.locator(".table-tools[data-for='cases-2'] .row-count").inner_text()
    assert count == f"{len(texts)} of 96 rows"
    assert page.errors == []


def log_tick_labels(page) -> dict[str, list[list]]:  # noqa: ANN001
    """Per log axis drawn ("plot-id x" / "plot-id y"): [label text, pixel centre along the
    axis, font size] of each tick label, in axis order."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("div.plot-target")].flatMap(div => ["x", "y"]
            .filter(a => div._fullLayout[a + "axis"] && div._fullLayout[a + "axis"].type === "log")
            .map(a => [div.id + " " + a, [...div.querySelectorAll("g." + a + "axislayer-above ." + a + "tick text")].map(t => {
                const r = t.getBoundingClientRect();
                return [t.textContent, a === "x" ? r.left + r.width / 2 : r.top + r.height / 2, parseFloat(getComputedStyle(t).fontSize)];
            })])))"""
    )


def test_log_axes_label_readable_values_at_their_place(open_page) -> None:  # noqa: ANN001
    """Each label on a log axis is the value at its place: no small "5" between 0.1 and 1
    standing for 0.5 (plotly's own minor log labels)."""
    seen = {}
    for name in ("suite-synthetic.html", "compare.html"):
        page = open_page(name)
        page.page.wait_for_selector("div.plot-target svg.main-svg")
        seen.update(log_tick_labels(page.page))
        assert page.errors == []
    assert len(seen) == 9, sorted(seen)  # speedup y x2, frameworks y x2, modes x and y, roofline x and y, compare x
    for axis, ticks in seen.items():
        assert len(ticks) >= 3, (axis, ticks)
        values = [float(text.replace(",", "")) for text, _, _ in ticks]
        assert len({size for _, _, size in ticks}) == 1, (axis, ticks)  # no smaller minor-digit labels
        # On a log axis pixels are linear in log10(value): every label sits where its value is.
        logs = [math.log10(v) for v in values]
        pixels = [p for _, p, _ in ticks]
        scale = (pixels[-1] - pixels[0]) / (logs[-1] - logs[0])
        for lg, px in zip(logs, pixels, strict=True):
            assert abs(pixels[0] + (lg - logs[0]) * scale - px) < 3, (axis, ticks)
    speedup = [text for text, _, _ in seen["plot-2-speedup-1 y"]]
    assert {"0.6", "1"} <= set(speedup) and not {"2", "5"} & set(speedup), speedup


def test_index_opens_with_the_headline_and_its_runs_table_is_never_clipped(open_page) -> None:  # noqa: ANN001
    index = open_page("index.html")
    page = index.page
    heads = page.eval_on_selector_all("main h2", "hs => hs.map(h => h.textContent)")
    assert heads[:2] == ["Headline", "Runs"], heads
    items = page.locator("section.headline li").all_inner_texts()
    assert len(items) == 6 and all("diagonalwise vs native" in i and "× across 6 cases" in i and "slower than native" in i for i in items), items
    assert page.locator("section.headline h3", has_text=f"Suite {XSS}").count() == 1

    def fit() -> dict:
        return page.evaluate(
            """() => {
                const t = document.getElementById("runs"), wrap = t.closest(".table-wrap");
                const box = wrap.getBoundingClientRect(), last = t.tHead.rows[0].lastElementChild;
                const hint = document.querySelector(".table-tools[data-for='runs'] .scroll-hint");
                const before = last.getBoundingClientRect().right <= box.right + 1;
                wrap.scrollLeft = wrap.scrollWidth;
                const reached = last.getBoundingClientRect().right <= box.right + 1 && last.getBoundingClientRect().left >= box.left;
                wrap.scrollLeft = 0;
                return {page: document.documentElement.scrollWidth, window: window.innerWidth, table: wrap.scrollWidth,
                        wrap: wrap.clientWidth, overflow: getComputedStyle(wrap).overflowX, before, reached, hint: !hint.hidden};
            }"""
        )

    wide = fit()  # 1400 px: every column fits, nothing to scroll
    assert wide["table"] <= wide["wrap"] and wide["before"] and not wide["hint"], wide
    index.screenshot("index-1400")
    page.set_viewport_size({"width": 700, "height": 900})
    page.wait_for_timeout(100)
    narrow = fit()  # 700 px: the page stays as wide as the window; the table scrolls in its box, and says so
    assert narrow["page"] <= narrow["window"], narrow
    assert narrow["overflow"] in ("auto", "scroll") and narrow["table"] > narrow["wrap"] and narrow["reached"] and narrow["hint"], narrow
    index.screenshot("index-700")
    assert index.errors == []

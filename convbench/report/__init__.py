"""The HTML report: a static site rendered with jinja2 from run folders.

:func:`render_site` writes ``index.html`` (the runs), one page per suite (tables and
plots), one page per run (environment, options, raw data) and, when asked, a
comparison page; ``static/`` holds plotly.js (written once from the installed plotly
package: the site works offline), the stylesheet and the table script, ``data/`` the
raw CSV and Parquet files of every run.

Conventions: every string from a suite, a result or an environment is escaped (jinja2
autoescape in the pages; HTML-escaped before it goes into a plot, whose labels plotly.js
reads as a subset of HTML). The same input renders a byte-identical site: runs, suites,
cases and plot traces are in a stable order, no time of rendering is written, and plot
div ids are fixed by their position.
"""

from __future__ import annotations

from convbench.report.render import ReportError, render_site

__all__ = ["ReportError", "render_site"]

/* convbench report: draw the plots, sort tables on a heading click, filter their rows,
   point out a table that scrolls sideways.
   Plain JavaScript, no library besides plotly.js (loaded by pages that have plots). */
(function () {
  "use strict";

  function drawPlots() {
    var targets = document.querySelectorAll("div.plot-target");
    if (!targets.length) return;
    if (typeof window.Plotly === "undefined") {
      targets.forEach(function (div) { div.textContent = "plotly.js did not load: static/plotly.min.js is missing."; });
      return;
    }
    targets.forEach(function (div) {
      var spec = JSON.parse(document.getElementById(div.getAttribute("data-spec")).textContent);
      window.Plotly.newPlot(div, spec.data, spec.layout, spec.config);
    });
  }

  /* Sort key of a cell: its data-sort attribute (a number in numeric columns), or null. */
  function key(td, numeric) {
    if (!td || !td.hasAttribute("data-sort")) return null;
    var raw = td.getAttribute("data-sort");
    if (!numeric) return raw.toLowerCase();
    var v = parseFloat(raw);
    return isNaN(v) ? null : v;
  }

  function sortBy(table, th) {
    var headers = Array.prototype.slice.call(th.parentNode.children);
    var col = headers.indexOf(th);
    var numeric = th.getAttribute("data-type") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (tr, i) {
      return { tr: tr, i: i, k: key(tr.cells[col], numeric) };
    });
    rows.sort(function (a, b) {
      if (a.k === null || b.k === null) {  /* missing values last, either direction */
        if (a.k === b.k) return a.i - b.i;
        return a.k === null ? 1 : -1;
      }
      var c = numeric ? a.k - b.k : (a.k < b.k ? -1 : a.k > b.k ? 1 : 0);
      if (!ascending) c = -c;
      return c !== 0 ? c : a.i - b.i;
    });
    rows.forEach(function (r) { body.appendChild(r.tr); });
  }

  function filter(tools, table) {
    var input = tools.querySelector(".filter-text");
    var select = tools.querySelector(".filter-status");
    var words = (input ? input.value : "").toLowerCase().split(/\s+/).filter(Boolean);
    var status = select ? select.value : "";
    var shown = 0, rows = table.tBodies[0].rows;
    Array.prototype.forEach.call(rows, function (tr) {
      var text = tr.textContent.toLowerCase();
      var ok = (!status || tr.getAttribute("data-status") === status) &&
        words.every(function (w) { return text.indexOf(w) !== -1; });
      tr.hidden = !ok;
      if (ok) shown += 1;
    });
    var count = tools.querySelector(".row-count");
    if (count) count.textContent = shown === rows.length ? rows.length + " rows" : shown + " of " + rows.length + " rows";
  }

  function setUpTables() {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("thead th").forEach(function (th) {
        th.addEventListener("click", function () { sortBy(table, th); });
      });
    });
    document.querySelectorAll(".table-tools").forEach(function (tools) {
      var table = document.getElementById(tools.getAttribute("data-for"));
      if (!table) return;
      tools.querySelectorAll("input, select").forEach(function (el) {
        el.addEventListener("input", function () { filter(tools, table); });
        el.addEventListener("change", function () { filter(tools, table); });
      });
    });
  }

  /* A table wider than its container scrolls inside it; say so next to its filter. */
  function markWideTables() {
    document.querySelectorAll(".table-tools").forEach(function (tools) {
      var table = document.getElementById(tools.getAttribute("data-for"));
      var wrap = table && table.closest(".table-wrap");
      var hint = tools.querySelector(".scroll-hint");
      if (!wrap || !hint) return;
      var wide = wrap.scrollWidth > wrap.clientWidth + 1;
      hint.hidden = !wide;
      wrap.classList.toggle("scrolls-x", wide);
    });
  }

  setUpTables();
  markWideTables();
  window.addEventListener("resize", markWideTables);
  drawPlots();
})();

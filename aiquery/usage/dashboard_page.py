"""The dashboard page: HTML, CSS and the script that draws the charts as inline SVG.

Hand-written, no library and nothing fetched, so the file opens offline. When the script has run, the body
carries ``data-dashboard="ready"``, ``data-charts`` (how many charts) and ``data-charts-with-data`` (how many
drew at least one mark); each figure carries ``data-drawn`` (marks drawn). Script errors are listed in
``#script-errors`` and counted in ``data-errors``. The tests read these attributes from headless Chromium.
"""

from __future__ import annotations

__all__ = ["PAGE_TEMPLATE"]

_STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --card: #ffffff; --back: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: var(--back); }
header { padding: 16px 24px; background: #243b53; color: #fff; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #bcccdc; }
nav a { color: #d9e2ec; margin-right: 14px; text-decoration: none; }
main { padding: 8px 24px 32px; }
section { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 16px; }
section h2 { flex-basis: 100%; margin: 8px 0 0; font-size: 17px; }
figure.chart { margin: 0; padding: 12px 14px; background: var(--card); border: 1px solid var(--line);
               border-radius: 6px; flex: 1 1 480px; min-width: 0; overflow-x: auto; }
figure.kpi { flex-basis: 100%; }
figcaption { font-weight: 600; margin-bottom: 8px; }
.kpis { display: flex; flex-wrap: wrap; gap: 24px; }
.kpi b { display: block; font-size: 24px; }
.kpi span { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.empty { color: var(--muted); font-style: italic; }
.legend { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 6px; color: var(--muted); }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
svg text { font-size: 11px; fill: var(--muted); }
#script-errors { margin: 16px 24px; padding: 12px; background: #ffe3e3; color: #8a041a; white-space: pre-wrap; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var errors = [];
  function report(message) {
    errors.push(String(message));
    var box = document.getElementById("script-errors");
    box.textContent = errors.join("\n");
    box.hidden = false;
    document.body.setAttribute("data-errors", String(errors.length));
  }
  window.addEventListener("error", function (event) { report(event.message || "script error"); });

  var NS = "http://www.w3.org/2000/svg";  // the SVG namespace name; nothing is fetched
  var COLORS = ["#2f80ed", "#f2994a", "#27ae60", "#9b51e0", "#eb5757", "#56ccf2", "#bdbdbd", "#219653"];
  var WIDTH = 640;

  function fmt(value) {
    if (value === null || value === undefined) { return "\u2013"; }
    if (typeof value === "number") {
      return value.toLocaleString("en-US", { maximumFractionDigits: 2 });
    }
    return String(value);
  }
  function svg(tag, attrs, parent) {
    var node = document.createElementNS(NS, tag);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function frame(plot, height) {
    // Scales with its card; the drawing's own units stay WIDTH x height.
    return svg("svg", { viewBox: "0 0 " + WIDTH + " " + height, width: "100%",
                        preserveAspectRatio: "xMinYMin meet", style: "max-width:" + WIDTH + "px" }, plot);
  }
  function titled(node, text) { svg("title", {}, node).textContent = text; return node; }
  function column(chart, name) { return chart.columns.indexOf(name); }
  function legend(plot, names) {
    if (names.length < 2) { return; }
    var box = document.createElement("div");
    box.className = "legend";
    names.forEach(function (name, i) {
      var item = document.createElement("span");
      var swatch = document.createElement("i");
      swatch.style.background = COLORS[i % COLORS.length];
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(String(name)));
      box.appendChild(item);
    });
    plot.appendChild(box);
  }

  function drawKpi(chart, plot) {
    var box = document.createElement("div");
    box.className = "kpis";
    var row = chart.rows[0] || [];
    var drawn = 0;
    chart.columns.forEach(function (name, i) {
      var item = document.createElement("div");
      item.className = "kpi";
      var value = document.createElement("b");
      value.textContent = fmt(row[i]);
      var label = document.createElement("span");
      label.textContent = name.replace(/_/g, " ");
      item.appendChild(value);
      item.appendChild(label);
      box.appendChild(item);
      if (row[i] !== null && row[i] !== undefined) { drawn += 1; }
    });
    plot.appendChild(box);
    return drawn;
  }

  function drawTable(chart, plot) {
    var table = document.createElement("table");
    var head = table.createTHead().insertRow();
    chart.columns.forEach(function (name) {
      var cell = document.createElement("th");
      cell.textContent = name;
      head.appendChild(cell);
    });
    var body = table.createTBody();
    chart.rows.forEach(function (row) {
      var line = body.insertRow();
      row.forEach(function (value) {
        var cell = line.insertCell();
        cell.textContent = fmt(value);
        if (typeof value === "number") { cell.className = "num"; }
      });
    });
    plot.appendChild(table);
    return chart.rows.length;
  }

  function drawBar(chart, plot) {
    var xi = column(chart, chart.x);
    var ys = chart.y.map(function (name) { return column(chart, name); });
    var bar = 14, gap = 10, left = 170, right = 90;
    var group = bar * ys.length + gap;
    var height = chart.rows.length * group + 10;
    var max = 0;
    chart.rows.forEach(function (row) {
      ys.forEach(function (yi) { if (row[yi] !== null) { max = Math.max(max, row[yi]); } });
    });
    var scale = max > 0 ? (WIDTH - left - right) / max : 0;
    var root = frame(plot, height);
    var drawn = 0;
    chart.rows.forEach(function (row, r) {
      var top = r * group + 5;
      var label = String(row[xi] === null ? "(none)" : row[xi]);
      svg("text", { x: left - 6, y: top + group / 2, "text-anchor": "end" }, root).textContent =
        label.length > 26 ? label.slice(0, 25) + "\u2026" : label;
      ys.forEach(function (yi, s) {
        var value = row[yi];
        if (value === null) { return; }
        var y = top + s * bar;
        titled(svg("rect", { x: left, y: y, width: Math.max(1, value * scale), height: bar - 2,
                             fill: COLORS[s % COLORS.length], "class": "mark" }, root),
               label + " \u00b7 " + chart.y[s] + ": " + fmt(value));
        svg("text", { x: left + value * scale + 4, y: y + bar - 4 }, root).textContent = fmt(value);
        drawn += 1;
      });
    });
    legend(plot, chart.y);
    return drawn;
  }

  function drawLine(chart, plot) {
    var xi = column(chart, chart.x);
    var xs = [], lines = {}, names = [];
    function point(name, x, value) {
      if (!(name in lines)) { lines[name] = {}; names.push(name); }
      lines[name][x] = value;
    }
    chart.rows.forEach(function (row) {
      var x = String(row[xi]);
      if (xs.indexOf(x) < 0) { xs.push(x); }
      if (chart.series) {
        point(String(row[column(chart, chart.series)]), x, row[column(chart, chart.y[0])]);
      } else {
        chart.y.forEach(function (name) { point(name, x, row[column(chart, name)]); });
      }
    });
    var height = 240, left = 60, right = 20, top = 12, bottom = 30;
    var max = 0;
    names.forEach(function (name) {
      xs.forEach(function (x) {
        var v = lines[name][x];
        if (v !== null && v !== undefined) { max = Math.max(max, v); }
      });
    });
    max = max > 0 ? max : 1;
    var step = xs.length > 1 ? (WIDTH - left - right) / (xs.length - 1) : 0;
    function px(i) { return xs.length > 1 ? left + i * step : (left + WIDTH - right) / 2; }
    function py(v) { return top + (height - top - bottom) * (1 - v / max); }
    var root = frame(plot, height);
    [0, 0.5, 1].forEach(function (f) {
      svg("line", { x1: left, x2: WIDTH - right, y1: py(max * f), y2: py(max * f), stroke: "#e4e7eb" }, root);
      svg("text", { x: left - 6, y: py(max * f) + 4, "text-anchor": "end" }, root).textContent = fmt(max * f);
    });
    [0, Math.floor((xs.length - 1) / 2), xs.length - 1].forEach(function (i, k, all) {
      if (i < 0 || all.indexOf(i) !== k) { return; }
      var anchor = xs.length > 1 && i === 0 ? "start" : (xs.length > 1 && i === xs.length - 1 ? "end" : "middle");
      svg("text", { x: px(i), y: height - 10, "text-anchor": anchor }, root).textContent = xs[i];
    });
    var drawn = 0;
    names.forEach(function (name, s) {
      var color = COLORS[s % COLORS.length], path = [];
      xs.forEach(function (x, i) {
        var v = lines[name][x];
        if (v === null || v === undefined) { return; }
        path.push(px(i) + "," + py(v));
        titled(svg("circle", { cx: px(i), cy: py(v), r: 3, fill: color, "class": "mark" }, root),
               name + " \u00b7 " + x + ": " + fmt(v));
        drawn += 1;
      });
      if (path.length > 1) {
        svg("polyline", { points: path.join(" "), fill: "none", stroke: color, "stroke-width": 2 }, root);
      }
    });
    legend(plot, names);
    return drawn;
  }

  var DRAW = { kpi: drawKpi, table: drawTable, bar: drawBar, line: drawLine };
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var withData = 0;
  data.charts.forEach(function (chart, index) {
    var figure = document.getElementById("chart-" + index);
    var plot = figure.querySelector(".plot");
    var drawn = 0;
    try {
      if (chart.rows.length) {
        drawn = DRAW[chart.kind](chart, plot);
      } else {
        plot.innerHTML = '<p class="empty">No rows.</p>';
      }
    } catch (error) {
      report(chart.name + ": " + (error && error.message ? error.message : error));
    }
    figure.setAttribute("data-drawn", String(drawn));
    if (drawn > 0) { withData += 1; }
  });
  document.body.setAttribute("data-charts", String(data.charts.length));
  document.body.setAttribute("data-charts-with-data", String(withData));
  document.body.setAttribute("data-errors", String(errors.length));
  document.body.setAttribute("data-dashboard", "ready");
})();
"""

PAGE_TEMPLATE = (
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>"""
    + _STYLE
    + """</style>
</head>
<body data-dashboard="loading">
<header><h1>{{TITLE}}</h1><p>Generated {{GENERATED}} by aiquery</p>
<nav>{{NAV}}</nav></header>
<pre id="script-errors" hidden></pre>
<main>
{{SECTIONS}}
</main>
<script type="application/json" id="dashboard-data">{{DATA}}</script>
<script>"""
    + _SCRIPT
    + """</script>
</body>
</html>
"""
)

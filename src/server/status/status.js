// kiln's status page: listens to /status/events (one sample a second from
// the server's own metrics) and draws the last two minutes. No library:
// the page is served by the admin listener under the site's
// Content-Security-Policy, and must work offline.
"use strict";

const WINDOW = 120;
const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"];
const CHARTS = [
  ["traffic", "Requests per second", [["answered", (p) => p.served_per_s]]],
  ["cpu", "CPU, cores", [["server", (p) => p.cpu_cores]]],
  ["memory", "Resident memory, MB", [["RSS", (p) => p.rss_mb]]],
  ["work", "Connections and dynamic requests", [
    ["connections", (p) => p.connections], ["in flight", (p) => p.in_flight],
    ["queued", (p) => p.queued], ["pool in use", (p) => p.pool_in_use],
    ["pool waiters", (p) => p.pool_waiters],
  ]],
  ["cache", "Route cache hit ratio, %", [["hits", (p) => (p.hit_ratio == null ? null : p.hit_ratio * 100)]]],
  ["bytes", "Bodies sent, MB/s", [["sent", (p) => p.bytes_per_s / 1e6]]],
];
const SVG = "http://www.w3.org/2000/svg";
const samples = [];

function element(name, attributes, text) {
  const node = name.startsWith("svg:")
    ? document.createElementNS(SVG, name.slice(4))
    : document.createElement(name);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function setUp() {
  const charts = document.getElementById("charts");
  for (const [id, title, lines] of CHARTS) {
    const figure = element("figure", { id: "chart-" + id });
    figure.append(element("figcaption", {}, title));
    const legend = element("div");
    lines.forEach(([name], index) => {
      legend.append(element("span", { class: "legend" }, "■ " + name));
    });
    legend.querySelectorAll("span").forEach((span, index) => { span.style.color = COLOURS[index]; });
    figure.append(legend);
    figure.append(element("svg:svg", { viewBox: "0 0 300 120", role: "img", "aria-label": title }));
    charts.append(figure);
  }
}

function draw() {
  for (const [id, , lines] of CHARTS) {
    const svg = document.querySelector("#chart-" + id + " svg");
    const values = lines.map(([, pick]) => samples.map(pick));
    const highest = Math.max(1e-9, ...values.flat().filter((v) => v != null && isFinite(v)));
    svg.replaceChildren();
    svg.append(element("svg:text", { x: 2, y: 10, "font-size": 9 }, format(highest)));
    values.forEach((series, index) => {
      const points = [];
      series.forEach((value, at) => {
        if (value == null || !isFinite(value)) return;
        const x = 300 - (series.length - 1 - at) * (300 / (WINDOW - 1));
        points.push(x.toFixed(1) + "," + (118 - (value / highest) * 104).toFixed(1));
      });
      if (points.length > 0) {
        svg.append(element("svg:polyline", {
          points: points.join(" "), fill: "none", stroke: COLOURS[index], "stroke-width": 1.5,
        }));
      }
    });
  }
}

function format(value) {
  if (value >= 10000) return (value / 1000).toFixed(0) + "k";
  if (value >= 10) return value.toFixed(0);
  return value.toFixed(2);
}

function when(ms) {
  return new Date(ms).toLocaleTimeString();
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const cells of rows) {
    const row = element("tr");
    for (const cell of cells) {
      const numeric = /^[-\d.,—]+$/.test(String(cell));
      row.append(element("td", numeric ? {} : { class: "text" }, String(cell)));
    }
    body.append(row);
  }
}

function show(sample) {
  samples.push(sample.point);
  if (samples.length > WINDOW) samples.shift();
  draw();
  fill("routes", sample.routes
    .sort((a, b) => b.per_s - a.per_s)
    .map((r) => [r.route, r.per_s.toFixed(1), r.mean_ms.toFixed(2), r.p99_ms == null ? "—" : String(r.p99_ms),
      r.hit_ratio == null ? "—" : (r.hit_ratio * 100).toFixed(1) + "%"]));
  if (sample.jobs) {
    const jobs = sample.jobs;
    const queued = Object.entries(jobs.queued).map(([state, n]) => `${state} ${n}`).join(", ") || "empty";
    document.getElementById("queue").textContent =
      `Queue: ${queued}; running ${jobs.running} of ${jobs.workers} workers here ` +
      `(busy ${(jobs.utilisation * 100).toFixed(0)}% of the time); ` +
      `the oldest due job has waited ${jobs.oldest_ready_s.toFixed(1)} s.`;
    const rate = (events, name) => (events[name] || 0).toFixed(1);
    fill("jobs", Object.entries(jobs.per_s)
      .map(([job, events]) => [job, rate(events, "started"), rate(events, "succeeded"),
        rate(events, "retried"), rate(events, "dead")]));
  }
  fill("slow", sample.slow_queries.slice().reverse()
    .map((q) => [when(q.at_ms), q.route, q.what, q.ms.toFixed(1)]));
  fill("errors", sample.errors.slice().reverse()
    .map((e) => [when(e.at_ms), e.method + " " + e.path, e.status]));
  const state = document.getElementById("state");
  const updates = Number(state.dataset.updates) + 1;
  state.dataset.updates = String(updates);
  state.className = "";
  state.textContent = "Live: " + updates + " samples, the last at " + when(sample.at_ms) + ".";
}

setUp();
const events = new EventSource("/status/events");
events.addEventListener("sample", (event) => show(JSON.parse(event.data)));
events.onerror = () => {
  const state = document.getElementById("state");
  state.className = "stale";
  state.textContent = "Disconnected; reconnecting…";
};

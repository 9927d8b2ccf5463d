// proxy-task dashboard: polls /api/snapshot and redraws. Text goes in with textContent only.
"use strict";

const STAGE_TITLES = { variance: "Variance measurement", model_selection: "Model selection", search: "Proxy-task search" };
let refreshMs = 5000;
let jobFilter = null; // null: the current stage's trials
let lastSnap = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function fmt(v, digits = 3) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function duration(secs) {
  if (secs === null || secs === undefined) return "–";
  secs = Math.round(secs);
  if (secs < 60) return secs + " s";
  if (secs < 3600) return Math.floor(secs / 60) + " min " + (secs % 60) + " s";
  return Math.floor(secs / 3600) + " h " + Math.floor((secs % 3600) / 60) + " min";
}

function hours(h) {
  if (h === null || h === undefined) return "–";
  return duration(h * 3600);
}

function timeUnit(hoursList) {
  const max = Math.max(0, ...hoursList.filter((h) => h !== null));
  if (max >= 2) return ["h", 1];
  if (max * 60 >= 2) return ["min", 60];
  return ["s", 3600];
}

function renderStages(snap) {
  const box = document.getElementById("stages");
  box.replaceChildren();
  const total = snap.stages.length;
  snap.stages.forEach((s, i) => {
    const counts = Object.entries(s.trials).map(([k, v]) => k + " " + v).join(", ") || "no trials yet";
    const planned = s.planned_trials ? " of up to " + s.planned_trials : "";
    const card = el("div", { class: "stage" + (i === snap.current_stage ? " current" : ""), "data-stage": s.name },
      el("h3", {}, (total > 1 ? (i + 1) + " of " + total + ": " : "") + (STAGE_TITLES[s.name] || s.name) + " ",
        el("span", { class: "badge " + s.state }, s.state)),
      el("div", {}, "trials: " + counts + planned),
      el("div", { class: "muted" }, "elapsed " + duration(s.elapsed_secs) + " · ETA " + duration(s.eta_secs)),
      s.detail ? el("div", {}, s.detail) : "");
    box.append(card);
  });
}

function corrTraces(p, x, method, xTitle, target, marker) {
  const traces = [];
  const s = p.series[method];
  if (s) {
    traces.push({ x: x, y: s.ci_high, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false, connectgaps: false });
    traces.push({ x: x, y: s.ci_low, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(9,105,218,0.15)",
      name: method + " CI", hoverinfo: "skip", connectgaps: false });
    traces.push({ x: x, y: s.coefficient, mode: "lines+markers", name: method + " (decides)", line: { color: "#0969da" },
      hovertemplate: method + " %{y:.3f}<br>" + xTitle + " %{x}<extra></extra>" });
  }
  if (target !== null && target !== undefined) {
    traces.push({ x: [null], y: [null], mode: "lines", name: "target " + fmt(target), line: { color: "#cf222e", dash: "dot" } });
  }
  if (marker !== null && marker !== undefined) {
    traces.push({ x: [null], y: [null], mode: "lines", name: "decision", line: { color: "#1a7f37", dash: "dash" } });
  }
  for (const [m, other] of Object.entries(p.series)) {
    if (m === method) continue;
    traces.push({ x: x, y: other.coefficient, mode: "lines", name: m, line: { color: "#8c959f", dash: "dash" } });
  }
  return traces;
}

function corrLayout(title, xTitle, target, marker) {
  const shapes = [];
  if (target !== null && target !== undefined) {
    shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: target, y1: target, line: { color: "#cf222e", dash: "dot" } });
  }
  if (marker !== null && marker !== undefined) {
    shapes.push({ type: "line", yref: "paper", y0: 0, y1: 1, x0: marker, x1: marker, line: { color: "#1a7f37", dash: "dash" } });
  }
  return {
    title: { text: title, font: { size: 13 }, x: 0.01, xanchor: "left" }, margin: { l: 50, r: 10, t: 30, b: 80 }, shapes: shapes,
    xaxis: { title: { text: xTitle, standoff: 4 } }, yaxis: { title: { text: "rank correlation" }, range: [-1.05, 1.05] },
    legend: { orientation: "h", x: 0, y: -0.32, font: { size: 11 } },
  };
}

function renderProxy(p, search, container) {
  const id = "proxy-" + p.name.replace(/[^A-Za-z0-9_-]/g, "_");
  let card = document.getElementById(id);
  if (!card) {
    card = el("div", { class: "proxy", id: id, "data-proxy": p.name },
      el("div", { class: "head" }), el("div", { class: "facts" }),
      el("div", { class: "charts" }, el("div", { class: "chart steps" }), el("div", { class: "chart time" })));
    container.append(card);
  }
  const method = search.method;
  const state = p.stopping_state || p.status;
  const cls = p.name === search.best ? "best" : (p.status === "done" ? (/^Met/.test(p.stopping_state) ? "pass" : "fail") : p.status);
  card.querySelector(".head").replaceChildren(
    el("h3", { class: "proxy-name" }, p.name), " ",
    el("span", { class: "badge " + cls }, p.name === search.best ? "best · " + state : state));
  const latest = p.latest;
  const latestText = latest
    ? method + " " + fmt(latest.coefficient) + " [" + fmt(latest.ci_low) + ", " + fmt(latest.ci_high) + "] at step " + latest.step + " (n=" + latest.n + ")"
    : "no valid correlation yet";
  const decision = p.status === "done"
    ? (p.stop_reason || p.stopping_state)
    : (p.status === "running" ? "running: no stopping rule has fired yet" : "pending");
  card.querySelector(".facts").replaceChildren(
    el("div", {}, "latest: ", el("span", { class: "latest" }, latestText)),
    el("div", {}, "decision: ", el("span", { class: "decision" }, decision)),
    el("div", { class: "muted" }, "training time per model at the decision " + hours(p.final_training_time_in_hours) + " · cost " +
      hours(p.cost_trial_hours) + " of trial time · latency corr " + fmt(p.latency_correlation) + " · failed trials " + p.num_failed_trials +
      " · args " + JSON.stringify(p.args)));
  if (typeof Plotly === "undefined") return;
  const config = { displaylogo: false, responsive: true };
  const crossStep = p.crossing ? p.crossing.step : null;
  Plotly.react(card.querySelector(".chart.steps"), corrTraces(p, p.steps, method, "step", search.target, crossStep),
    corrLayout("correlation vs training steps", "training step", search.target, crossStep), config);
  const [unit, scale] = timeUnit(p.hours);
  const times = p.hours.map((h) => (h === null ? null : h * scale));
  const crossTime = p.crossing && p.crossing.hours !== null ? p.crossing.hours * scale : null;
  Plotly.react(card.querySelector(".chart.time"), corrTraces(p, times, method, unit, search.target, crossTime),
    corrLayout("correlation vs training time", "median training time per model (" + unit + ")", search.target, crossTime), config);
}

function renderSearch(snap) {
  const search = snap.search;
  document.getElementById("search-section").hidden = !search;
  document.getElementById("log-section").hidden = !search;
  if (!search) return;
  const parts = [
    "decides on " + search.method + " (" + search.stop_rule + " rule), target " + fmt(search.target),
    search.best ? "best proxy task: " + search.best : (search.finished ? "no proxy task passed" : "no proxy task has passed yet"),
  ];
  const summary = document.getElementById("search-summary");
  summary.replaceChildren(el("div", { class: "facts" }, parts.join(" · ")));
  if (search.noise_ceiling) summary.append(el("div", { class: "muted" }, search.noise_ceiling));
  for (const w of search.warnings) summary.append(el("div", { class: "error" }, w));
  const container = document.getElementById("proxies");
  const names = new Set(search.proxies.map((p) => p.name));
  for (const card of Array.from(container.children)) if (!names.has(card.dataset.proxy)) card.remove();
  for (const p of search.proxies) renderProxy(p, search, container);
  const body = document.querySelector("#decision-log tbody");
  body.replaceChildren(...search.decision_log.map((d) =>
    el("tr", {}, el("td", {}, d.proxy), el("td", { class: "num" }, d.poll === null ? "end" : d.poll), el("td", {}, d.state), el("td", {}, d.reason))));
}

function renderTrials(snap) {
  const select = document.getElementById("job-filter");
  const stage = snap.stages[snap.current_stage] ? snap.stages[snap.current_stage].name : null;
  const jobs = [...new Set(snap.trials.map((t) => t.stage + " / " + t.job))];
  const options = [["", "all trials of the current stage"], ["*", "all trials"], ...jobs.map((j) => [j, j])];
  const wanted = jobFilter === null ? "" : jobFilter;
  select.replaceChildren(...options.map(([v, label]) => {
    const o = el("option", { value: v }, label);
    if (v === wanted) o.selected = true;
    return o;
  }));
  const rows = snap.trials.filter((t) => wanted === "*" || (wanted === "" ? t.stage === stage : t.stage + " / " + t.job === wanted));
  document.querySelector("#trials tbody").replaceChildren(...rows.map((t) =>
    el("tr", { "data-trial": t.trial_id },
      el("td", {}, t.job), el("td", { class: "num" }, t.trial_id), el("td", {}, el("span", { class: "badge " + t.state }, t.state)),
      el("td", { class: "num" }, t.last_step === null ? "–" : t.last_step), el("td", { class: "num" }, fmt(t.last_accuracy, 4)),
      el("td", { title: t.advice || "" }, t.failure + (t.advice ? " (" + t.advice + ")" : "")))));
}

function render(snap) {
  lastSnap = snap;
  const error = document.getElementById("error");
  document.getElementById("folder").textContent = snap.uri || "";
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  if (snap.refresh_secs) refreshMs = snap.refresh_secs * 1000;
  if (snap.error) {
    error.hidden = false;
    error.textContent = "cannot read the folder: " + snap.error;
    return;
  }
  error.hidden = !!snap.found;
  if (!snap.found) error.textContent = "no controller state in this folder yet: waiting for a run to start";
  renderStages(snap);
  renderSearch(snap);
  renderTrials(snap);
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

async function tick() {
  try {
    const response = await fetch("/api/snapshot", { cache: "no-store" });
    render(await response.json());
  } catch (e) {
    const error = document.getElementById("error");
    error.hidden = false;
    error.textContent = "the dashboard server does not answer (" + e + "); retrying";
  }
  setTimeout(tick, refreshMs);
}

document.getElementById("job-filter").addEventListener("change", (ev) => {
  jobFilter = ev.target.value;
  if (lastSnap) renderTrials(lastSnap);
});
tick();

// backforge web page: a little JavaScript on server-rendered pages (no build step).
"use strict";
const bf = (() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(2) + "%";
  const num = (v) => (v === null || v === undefined) ? "–" : Number(v).toLocaleString(undefined, {maximumFractionDigits: 3});
  const ACTIVE = ["queued", "warming_up", "running"];

  async function api(path, options = {}) {
    const response = await fetch(path, {credentials: "same-origin", ...options,
      headers: {"Content-Type": "application/json", ...(options.headers || {})}});
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return {ok: response.ok, status: response.status, body};
  }

  function detailText(body) {
    if (!body || body.detail === undefined) return "request failed";
    if (typeof body.detail === "string") return body.detail;
    return body.detail.map((d) => `${d.path || (d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }

  // ---------------------------------------------------------------- index: editor, submit, jobs
  function jobRow(job) {
    const run = job.result && job.result.run ? `<a href="/runs/${esc(job.result.run)}">${esc(job.result.run)}</a>` : "";
    const cancel = ACTIVE.includes(job.state) ? `<button class="cancel" data-id="${esc(job.id)}">cancel</button>` : "";
    return `<tr data-id="${esc(job.id)}" data-state="${esc(job.state)}"><td><code>${esc(job.id)}</code></td><td>${esc(job.kind)}</td>` +
      `<td class="state ${esc(job.state)}">${esc(job.state)}</td>` +
      `<td><div class="bar" role="progressbar" aria-valuenow="${Math.round(job.progress * 100)}"><div class="fill" style="width:${(job.progress * 100).toFixed(1)}%"></div></div></td>` +
      `<td class="msg">${esc(job.error || job.message)}${job.eta && ACTIVE.includes(job.state) ? ` (ETA ${job.eta.toFixed(1)} s)` : ""}</td><td>${run}</td><td>${cancel}</td></tr>`;
  }

  function runRow(run) {
    const s = run.summary || {};
    const isRun = run.kind === "run";
    const checked = document.querySelector(`input.pick[value="${CSS.escape(run.id)}"]:checked`) ? " checked" : "";
    return `<tr><td>${isRun ? `<input type="checkbox" class="pick" value="${esc(run.id)}" aria-label="compare ${esc(run.id)}"${checked}>` : ""}</td>` +
      `<td><a href="/runs/${esc(run.id)}">${esc(run.id)}</a></td><td>${esc(run.kind)}</td>` +
      `<td>${s.start ? esc(s.start.slice(0, 10)) + " → " + esc((s.end || "").slice(0, 10)) : ""}</td>` +
      `<td>${isRun ? pct(s.total_return) : ""}</td><td>${isRun ? num(s.sharpe) : ""}</td><td>${isRun ? pct(s.max_drawdown) : ""}</td>` +
      `<td>${s.trades ?? ""}</td></tr>`;
  }

  async function refreshRuns() {
    const r = await api("/api/runs?limit=10000");
    if (!r.ok) return;
    $("#runs tbody").innerHTML = r.body.runs.map(runRow).join("");
    $("#runs-count").textContent = r.body.total;
  }

  let knownDone = -1;
  async function refreshJobs() {
    const r = await api("/api/jobs?limit=100");
    if (!r.ok) return false;
    $("#jobs tbody").innerHTML = r.body.jobs.map(jobRow).join("");
    $("#jobs-total").textContent = r.body.total;
    if (knownDone >= 0 && r.body.counts.done !== knownDone) refreshRuns();
    knownDone = r.body.counts.done;
    const c = r.body.counts;
    $("#job-counts").textContent = `${c.queued} queued · ${c.warming_up + c.running} running · ${c.done} done · ${c.failed} failed`;
    return r.body.jobs.some((j) => ACTIVE.includes(j.state));
  }

  function watch(jobId) {
    // live progress of one job through its server-sent events; the list refreshes on every event
    const source = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/events`);
    const update = () => refreshJobs();
    ["state", "progress", "log"].forEach((name) => source.addEventListener(name, update));
    source.addEventListener("end", () => { source.close(); refreshJobs(); });
    source.onerror = () => { source.close(); };
  }

  let validateTimer = null;
  function body() {
    const kind = $("#kind").value;
    const source = $("#data-source").value;
    const data = source.startsWith("catalog:") ? {source: "catalog", bar: source.slice(8)} : {source: "strategy"};
    const out = {kind, strategy: $("#strategy").value, data};
    if (kind === "walk_forward") { out.in_sample = $("#in-sample").value; out.out_of_sample = $("#out-of-sample").value; }
    return out;
  }

  let validations = 0;
  async function validate() {
    const box = $("#validation");
    const mine = ++validations;
    const r = await api("/api/strategies/validate", {method: "POST", body: JSON.stringify({strategy: $("#strategy").value, data: body().data})});
    if (mine !== validations) return;  // the text changed while this answer was on its way
    if (r.ok) {
      const p = r.body.parameters.length ? `, parameters: ${r.body.parameters.join(", ")}` : "";
      box.innerHTML = `<span class="ok">valid: ${esc(r.body.name)} — ${r.body.strategies} strategies, ${r.body.assets} assets, ${r.body.bars} bars${esc(p)}</span>`;
      $("#strategy").classList.remove("invalid");
    } else {
      box.innerHTML = `<span class="bad">${esc(detailText(r.body))}</span>`;
      $("#strategy").classList.add("invalid");
    }
  }

  function index() {
    const examples = JSON.parse($("#examples-data").textContent);
    $("#example").addEventListener("change", (e) => {
      const ex = examples.find((x) => x.name === e.target.value);
      if (ex) { $("#strategy").value = ex.text; validate(); }
    });
    $("#kind").addEventListener("change", () => { $("#wf-fields").hidden = $("#kind").value !== "walk_forward"; });
    $("#strategy").addEventListener("input", () => { clearTimeout(validateTimer); validateTimer = setTimeout(validate, 500); });
    $("#data-source").addEventListener("change", validate);
    $("#submit").addEventListener("click", async () => {
      const status = $("#submit-status");
      status.textContent = "submitting…";
      const r = await api("/api/jobs", {method: "POST", body: JSON.stringify(body())});
      if (!r.ok) { status.textContent = ""; $("#validation").innerHTML = `<span class="bad">${esc(detailText(r.body))}</span>`; return; }
      status.textContent = `queued job ${r.body.id}`;
      await refreshJobs();
      watch(r.body.id);
    });
    $("#jobs").addEventListener("click", async (e) => {
      const button = e.target.closest("button.cancel");
      if (!button) return;
      await api(`/api/jobs/${encodeURIComponent(button.dataset.id)}/cancel`, {method: "POST"});
      refreshJobs();
    });
    const picks = () => [...document.querySelectorAll("input.pick:checked")].map((x) => x.value);
    document.addEventListener("change", (e) => { if (e.target.classList.contains("pick")) $("#compare").disabled = picks().length < 2; });
    $("#compare").addEventListener("click", () => { location.href = "/compare?runs=" + picks().map(encodeURIComponent).join(","); });
    const poll = async () => { const active = await refreshJobs(); setTimeout(poll, active ? 1000 : 4000); };
    setTimeout(poll, 1000);
    validate();
  }

  // ---------------------------------------------------------------- run page
  const layout = (extra = {}) => ({margin: {l: 60, r: 20, t: 20, b: 40}, hovermode: "x unified", template: "plotly_white", ...extra});

  function run() {
    const charts = JSON.parse($("#charts-data").textContent);
    Plotly.newPlot("equity-chart", [
      {x: charts.equity.t, y: charts.equity.v, name: "equity", type: "scatter", mode: "lines", line: {color: "#2563eb"}},
      {x: charts.drawdown.t, y: charts.drawdown.v, name: "drawdown", type: "scatter", mode: "lines", fill: "tozeroy",
       line: {color: "#b91c1c"}, yaxis: "y2"},
    ], layout({height: 420, yaxis: {title: "equity", domain: [0.35, 1]}, yaxis2: {title: "drawdown", tickformat: ".0%", domain: [0, 0.28]}}),
    {responsive: true, displaylogo: false});
    const select = $("#asset");
    const assets = Object.keys(charts.prices);
    select.innerHTML = assets.map((a) => `<option>${esc(a)}</option>`).join("");
    const draw = () => {
      const p = charts.prices[select.value];
      if (!p) return;
      Plotly.react("price-chart", [
        {x: p.t, y: p.close, name: "close", type: "scatter", mode: "lines", line: {color: "#374151"}},
        {x: p.entries.t, y: p.entries.p, name: "entry", type: "scatter", mode: "markers", marker: {symbol: "triangle-up", size: 9, color: "#15803d"}},
        {x: p.exits.t, y: p.exits.p, name: "exit", type: "scatter", mode: "markers", marker: {symbol: "triangle-down", size: 9, color: "#b91c1c"}},
      ], layout({height: 380}), {responsive: true, displaylogo: false});
    };
    select.addEventListener("change", draw);
    draw();
    $("#judge").addEventListener("click", async (e) => {
      const status = $("#judge-status");
      const r = await api("/api/jobs", {method: "POST", body: JSON.stringify({kind: "judge", run: e.target.dataset.run})});
      if (!r.ok) { status.textContent = detailText(r.body); return; }
      status.textContent = "judging…";
      const source = new EventSource(`/api/jobs/${encodeURIComponent(r.body.id)}/events`);
      source.addEventListener("progress", (ev) => { status.textContent = JSON.parse(ev.data).message; });
      source.addEventListener("end", (ev) => {
        source.close();
        const state = JSON.parse(ev.data).state;
        if (state === "done") location.reload(); else status.textContent = `judge ${state}`;
      });
    });
  }

  // ---------------------------------------------------------------- compare
  async function compare() {
    const ids = JSON.parse($("#compare-ids").textContent);
    $("#compare-form").addEventListener("submit", () => {
      $("#runs-field").value = [...$("#pick").selectedOptions].map((o) => o.value).join(",");
      $("#pick").disabled = true;
    });
    if (ids.length < 2) { $("#compare-error").textContent = "Pick at least two runs."; return; }
    const r = await api("/api/compare?runs=" + ids.map(encodeURIComponent).join(","));
    if (!r.ok) { $("#compare-error").textContent = detailText(r.body); return; }
    const head = "<thead><tr><th>metric</th>" + r.body.runs.map((id) => `<th><a href="/runs/${esc(id)}">${esc(id)}</a></th>`).join("") + "</tr></thead>";
    const rows = r.body.metrics.map((m) => {
      const isPct = /return|drawdown|cagr|volatility|win_rate|exposure|alpha/.test(m.metric) && !/duration/.test(m.metric);
      return `<tr><td>${esc(m.metric)}</td>` + r.body.runs.map((id) => `<td>${isPct ? pct(m.values[id]) : num(m.values[id])}</td>`).join("") + "</tr>";
    }).join("");
    $("#compare-table").innerHTML = head + "<tbody>" + rows + "</tbody>";
    Plotly.newPlot("compare-chart", r.body.runs.map((id) => ({x: r.body.equity[id].t, y: r.body.equity[id].v, name: id, type: "scatter", mode: "lines"})),
      layout({height: 420}), {responsive: true, displaylogo: false});
  }

  // ---------------------------------------------------------------- optimization heatmap
  function heatmap() {
    const div = $("#heatmap");
    const draw = async () => {
      const q = new URLSearchParams({x: $("#hx").value, y: $("#hy").value, metric: $("#hm").value});
      const r = await api(`/api/runs/${div.dataset.run}/heatmap?${q}`);
      if (!r.ok) { $("#heatmap-error").textContent = detailText(r.body); return; }
      $("#heatmap-error").textContent = "";
      Plotly.react(div, r.body.data, {...r.body.layout, height: 480}, {responsive: true, displaylogo: false});
    };
    ["#hx", "#hy", "#hm"].forEach((s) => $(s).addEventListener("change", draw));
    draw();
  }

  function walkforward() {
    const d = JSON.parse($("#wf-data").textContent);
    Plotly.newPlot("wf-chart", [{x: d.t, y: d.v, type: "scatter", mode: "lines", name: "out-of-sample equity"}], layout({height: 380}),
      {responsive: true, displaylogo: false});
  }

  // ---------------------------------------------------------------- paper session (read-only)
  function session() {
    const d = JSON.parse($("#session-data").textContent);
    Plotly.newPlot("session-chart", [{x: d.t, y: d.v, type: "scatter", mode: "lines", name: "equity", line: {color: "#2563eb"}}],
      layout({height: 360}), {responsive: true, displaylogo: false});
  }

  return {index, run, compare, heatmap, walkforward, session, api};
})();

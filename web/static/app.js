// asyncjobs dashboard: a hash-routed page over the HTTP API. Every piece of user data goes
// into the DOM as text (h() never sets innerHTML), so job arguments cannot inject markup.
"use strict";

const TOKEN_KEY = "asyncjobs.token";
const main = document.getElementById("main");
const conn = document.getElementById("conn");

// --- DOM helpers ---------------------------------------------------------------------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...nodes(kids));
  return el;
}
const nodes = (kids) => kids.flat(Infinity).filter((k) => k != null && k !== false)
  .map((k) => (k instanceof Node ? k : document.createTextNode(String(k))));
const fill = (el, ...kids) => el.replaceChildren(...nodes(kids));
const show = (...kids) => fill(main, ...kids);
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
const fmtAge = (s) => (s == null ? "—" : s < 60 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`);
const json = (v) => JSON.stringify(v, null, 2);
const status = (s) => h("span", { class: `status ${s}`, "data-status": s }, s);
const jobLink = (id) => h("a", { href: `#/job/${encodeURIComponent(id)}` }, id);
const table = (head, rows) =>
  h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, rows)));

// --- API access ----------------------------------------------------------------------
class AuthError extends Error {}
async function api(path, { method = "GET", body } = {}) {
  const headers = { "X-Asyncjobs-Request": "1" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) { login(); throw new AuthError("unauthorized"); }
  if (!resp.ok) { const e = new Error(data.error?.message || resp.statusText); e.status = resp.status; e.data = data; throw e; }
  return data;
}
const list = (data, ...names) => (Array.isArray(data) ? data : names.map((n) => data[n]).find(Array.isArray) || []);

function login(message) {
  live.close();
  sessionStorage.removeItem(TOKEN_KEY);
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true });
  show(h("h1", {}, "Sign in"),
    h("form", { id: "login", onsubmit: (e) => { e.preventDefault(); sessionStorage.setItem(TOKEN_KEY, input.value); route(); } },
      h("p", { class: "muted" }, message || "This dashboard is protected by the API token (ASYNCJOBS_API_TOKEN)."),
      h("div", { class: "field" }, h("label", {}, "API token", input)), h("button", {}, "Sign in")));
  input.focus();
}

// --- live events: one EventSource at a time, reopened with a fresh ticket after a drop ---
// An open stream says only that this server answers: the badge reads "degraded" while its
// /readyz says Redis is down (checked when the stream opens and every HEALTH_MS after).
const HEALTH_MS = 3000;
const live = {
  es: null, params: null, handlers: null, retry: 500, timer: null,
  set(state) { conn.dataset.state = state; conn.textContent = state; },
  async check() {
    const es = this.es;
    if (!es || es.readyState !== EventSource.OPEN) return;
    const ready = await fetch("/readyz", { cache: "no-store" }).then((r) => r.ok, () => false);
    if (this.es === es && es.readyState === EventSource.OPEN) this.set(ready ? "live" : "degraded");
  },
  async open(params, handlers) {
    this.close();
    this.params = params; this.handlers = handlers;
    await this.connect();
  },
  async connect() {
    const params = this.params;
    let ticket = "";
    try { ticket = (await api("/api/dashboard/ticket", { method: "POST" })).ticket; } catch (e) {
      if (e instanceof AuthError) return;
      return this.drop();
    }
    if (params !== this.params) return;
    const query = new URLSearchParams({ ...params, ...(ticket ? { ticket } : {}) });
    const es = (this.es = new EventSource(`/dashboard/events?${query}`));
    es.onopen = () => { this.set("live"); this.retry = 500; this.check(); this.handlers.open?.(); };
    es.onerror = () => { if (this.es === es) this.drop(); };
    for (const kind of ["tick", "snapshot", "job", "hello"]) {
      es.addEventListener(kind, (m) => this.handlers[kind]?.(JSON.parse(m.data)));
    }
    // the job has ended (or does not exist): the server closes the stream; don't reconnect
    es.addEventListener("end", () => { if (this.es === es) this.finish(); });
  },
  finish() { clearTimeout(this.timer); this.es?.close(); this.es = null; this.set("ended"); },
  drop() {
    this.es?.close(); this.es = null;
    this.set("disconnected");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.retry);
    this.retry = Math.min(this.retry * 2, 5000);
  },
  close() { clearTimeout(this.timer); this.es?.close(); this.es = null; this.params = null; this.set("connecting"); },
};

setInterval(() => live.check(), HEALTH_MS);

// --- pages ---------------------------------------------------------------------------
async function overviewPage() {
  const cards = h("div", { class: "cards" });
  const queues = h("div");
  const chartBox = h("div", { id: "chart" });
  const feed = h("ul", { class: "feed", id: "feed" });
  show(h("h1", {}, "Overview"), cards, h("h2", {}, "Queues"), queues,
    h("h2", {}, "Throughput (jobs per second)"), chartBox, h("h2", {}, "Event feed"), feed);
  const refresh = async () => {
    const o = await api("/api/dashboard/overview");
    const total = (k) => o.queues.reduce((n, q) => n + q[k], 0);
    fill(cards, ...[["Queued", total("queued")], ["In progress", total("in_progress")],
      ["Deferred", total("deferred")], ["Workers online", o.workers_online], ["Dead letters", o.dead]]
      .map(([k, v]) => h("div", { class: "card" }, k, h("b", { "data-card": k }, v))));
    fill(queues, table(["Queue", "Queued", "Deferred", "In progress", "Complete", "Failed", "Aborted", "Oldest waiting",
      "Held by limits", ""],
      o.queues.map((q) => h("tr", {}, h("td", {}, q.name), h("td", {}, q.queued), h("td", {}, q.deferred),
        h("td", {}, q.in_progress), h("td", {}, q.complete), h("td", {}, q.failed), h("td", {}, q.aborted),
        h("td", {}, fmtAge(q.oldest_age_s)), h("td", {}, q.waiting ?? 0), h("td", {}, pauseButton(q, refresh))))));
  };
  await refresh();
  const chart = throughputChart(chartBox);
  let ticks = 0;
  live.open({}, {
    open: refresh,
    tick: (t) => {
      chart.push(t.ts / 1000, t.complete, t.failed);
      for (const e of t.events) {
        feed.prepend(h("li", {}, `${new Date(e.ts || t.ts).toLocaleTimeString()} `, jobLink(e.job_id), ` ${e.event}`,
          e.function ? ` · ${e.function}` : ""));
      }
      while (feed.children.length > 100) feed.lastChild.remove();
      if (++ticks % 5 === 0 || t.complete || t.failed) refresh().catch(() => {});
    },
  });
}

function throughputChart(box) {
  const span = 300;
  const now = Math.floor(Date.now() / 1000);
  const data = [[], [], []];
  for (let i = span; i > 0; i--) { data[0].push(now - i); data[1].push(0); data[2].push(0); }
  const width = () => Math.max(280, box.clientWidth - 10);
  const plot = new uPlot({ width: width(), height: 200, series: [{},
    { label: "completed", stroke: "#15803d", width: 2 }, { label: "failed", stroke: "#b91c1c", width: 2 }],
  axes: [{}, { size: 40 }] }, data, box);
  const onResize = () => plot.setSize({ width: width(), height: 200 });
  window.addEventListener("resize", onResize);
  return {
    push(ts, ok, bad) {
      data[0].push(ts); data[1].push(ok); data[2].push(bad);
      if (data[0].length > span) data.forEach((col) => col.shift());
      plot.setData(data);
    },
  };
}

async function jobsPage(query) {
  const [funcs, ov] = await Promise.all([functions(), api("/api/dashboard/overview")]);
  const pick = (name, values, label) => h("label", {}, label, h("select", { name },
    h("option", { value: "" }, "any"), values.map((v) => h("option", { value: v, selected: query.get(name) === v }, v))));
  const text = h("input", { name: "q", value: query.get("q") || "", placeholder: "id, arguments, error…" });
  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams([...new FormData(form)].filter(([, v]) => v));
    location.hash = `#/jobs?${p}`;
  } }, pick("state", ["queued", "deferred", "in_progress", "complete", "failed", "aborted"], "State"),
  pick("queue", ov.queues.map((q) => q.name), "Queue"), pick("function", funcs.map((f) => f.name), "Function"),
  h("label", {}, "Text", text), h("button", {}, "Filter"));
  const body = h("div", {}, h("p", { class: "muted" }, "loading…"));
  show(h("h1", {}, "Jobs"), form, body);
  const params = new URLSearchParams(query);
  const page = await api(`/api/dashboard/jobs?${params}`);
  const cursors = (query.get("back") || "").split(",").filter(Boolean);
  const nav = (cursor, back) => { const p = new URLSearchParams(query); p.set("cursor", cursor); p.set("back", back.join(","));
    if (!back.length) p.delete("back"); location.hash = `#/jobs?${p}`; };
  fill(body, 
    table(["Job", "Function", "Status", "Queue", "Arguments", "Enqueued"], page.jobs.map((j) => h("tr", {},
      h("td", { class: "wrap" }, jobLink(j.job_id)), h("td", {}, j.function || "—"), h("td", {}, status(j.status)),
      h("td", {}, j.queue || "—"), h("td", { class: "wrap" }, j.args), h("td", { class: "hide-sm" }, fmtTime(j.enqueue_ms))))),
    h("p", { class: "muted" }, (page.filtered ? `${page.jobs.length} matches (examined ${page.scanned} of ${page.total}). ` : "")
      + "Waiting jobs first, from the queues; then started and ended jobs, newest first."),
    h("div", { class: "actions" },
      h("button", { disabled: !cursors.length, onclick: () => nav(cursors.at(-1), cursors.slice(0, -1)) }, "← Newer"),
      h("button", { disabled: page.next_cursor == null, onclick: () => nav(page.next_cursor, [...cursors, query.get("cursor") || "0"]) }, "Older →")));
}

let functionsCache = null;
async function functions() {
  functionsCache ||= list(await api("/api/functions"), "functions", "items");
  return functionsCache;
}

async function jobPage(id) {
  const view = h("div");
  const timeline = h("ul", { class: "feed timeline", id: "timeline" });
  show(h("h1", {}, "Job ", h("span", { class: "wrap" }, id)), view, h("h2", {}, "Events"), timeline);
  const render = (rec) => {
    const pct = rec.progress ?? (rec.status === "complete" ? 100 : 0);
    const running = ["queued", "deferred", "in_progress"].includes(rec.status);
    fill(view, 
      h("div", { class: "actions" }, status(rec.status),
        running && h("button", { class: "danger", id: "abort", onclick: () => abortJob(id) }, "Abort"),
        ["failed", "aborted"].includes(rec.status) && h("button", { id: "retry", onclick: () => retryJob(rec) }, "Retry")),
      h("div", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100, id: "progress" },
        h("div", { style: `width:${Math.max(0, Math.min(100, pct))}%` })),
      h("p", { class: "muted", id: "progress-text" }, `${pct.toFixed(0)}%`, rec.message ? ` · ${rec.message}` : ""),
      h("dl", {}, [["Function", rec.function], ["Queue", rec.queue], ["Waiting", rec.waiting?.replace("_", " ")],
        ["Tries", rec.tries], ["Enqueued", fmtTime(rec.enqueue_ms)],
        ["Started", fmtTime(rec.start_ms)], ["Finished", fmtTime(rec.finish_ms)]].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")])),
      h("h2", {}, "Arguments"), h("pre", { id: "args" }, json({ args: rec.args, kwargs: rec.kwargs })),
      rec.status === "complete" && [h("h2", {}, "Result"), h("pre", { id: "result" }, json(rec.result))],
      rec.error && [h("h2", {}, "Error"), h("p", { class: "error", id: "error" }, `${rec.error.type}: ${rec.error.message}`),
        rec.error.traceback && h("pre", {}, rec.error.traceback)]);
  };
  const record = await api(`/api/jobs/${encodeURIComponent(id)}`);
  render(record);
  let last = record;
  live.open({ job: id }, {
    snapshot: (rec) => { last = rec; render(rec); },
    job: (e) => {
      timeline.append(h("li", {}, `${new Date(e.ts || Date.now()).toLocaleTimeString()} ${e.event}`,
        e.progress != null ? ` ${Number(e.progress).toFixed(0)}%` : "", e.message ? ` · ${e.message}` : "",
        e.error?.message ? ` · ${e.error.message}` : ""));
      if (e.event === "progress") { last = { ...last, status: "in_progress", progress: e.progress, message: e.message }; render(last); }
      else api(`/api/jobs/${encodeURIComponent(id)}`).then((rec) => { last = rec; render(rec); }).catch(() => {});
    },
  });
}

// pause or resume a queue (flow control): paused queues stay listed, their jobs stay queued
function pauseButton(q, refresh) {
  const action = q.paused ? "resume" : "pause";
  return h("button", { id: `${action}-${q.name}`, onclick: () =>
    api(`/api/queues/${encodeURIComponent(q.name)}/${action}`, { method: "POST" }).then(refresh, alertError) },
  q.paused ? "Resume" : "Pause");
}

async function abortJob(id) {
  if (!confirm(`Abort job ${id}?`)) return;
  await api(`/api/jobs/${encodeURIComponent(id)}/abort`, { method: "POST" }).catch((e) => alertError(e));
}

async function retryJob(rec) {
  try {
    await api(`/api/dead/${encodeURIComponent(rec.job_id)}/retry`, { method: "POST" });
    route();
  } catch (e) {
    if (e.status !== 404) return alertError(e);
    const created = await api("/api/jobs", { method: "POST", body: { function: rec.function, args: rec.args, kwargs: rec.kwargs } });
    location.hash = `#/job/${encodeURIComponent(jobId(created))}`;
  }
}

const jobId = (r) => r.job_id || r.id || r.job?.job_id;
function alertError(e) { if (!(e instanceof AuthError)) main.prepend(h("p", { class: "error", role: "alert" }, e.message)); }

async function deadPage() {
  const box = h("div");
  show(h("h1", {}, "Dead letters"), box);
  const act = async (path, question) => {
    if (!confirm(question)) return;
    await api(path, { method: "POST" }).catch(alertError);
    await refresh();
  };
  const refresh = async () => {
    const entries = list(await api("/api/dead?limit=200"), "items", "dead");
    fill(box, h("div", { class: "actions" },
      h("button", { id: "retry-all", disabled: !entries.length, onclick: () => act("/api/dashboard/dead/retry-all", "Retry every dead-lettered job?") }, "Retry all"),
      h("button", { id: "purge", class: "danger", disabled: !entries.length, onclick: () => act("/api/dashboard/dead/purge", "Delete every dead letter for good?") }, "Purge")),
    entries.length ? table(["Job", "Function", "Reason", "Error", "Tries", "Failed at", ""], entries.map((d) => h("tr", { "data-job": d.job_id },
      h("td", { class: "wrap" }, jobLink(d.job_id)), h("td", {}, d.function), h("td", {}, d.reason),
      h("td", { class: "wrap" }, d.error ? `${d.error.type}: ${d.error.message}` : "—"), h("td", {}, d.tries),
      h("td", { class: "hide-sm" }, fmtTime(d.failed_at_ms)),
      h("td", {}, h("button", { class: "retry", onclick: () => act(`/api/dead/${encodeURIComponent(d.job_id)}/retry`, `Retry job ${d.job_id}?`) }, "Retry")))))
      : h("p", { class: "muted" }, "No dead letters."));
  };
  await refresh();
  // reload on connect (covers events missed while connecting) and, at most once a second,
  // when jobs moved (a failure is not always announced by a "failed" event)
  live.open({}, { open: refresh, tick: (t) => { if (t.failed || t.events.length) refresh().catch(() => {}); } });
}

async function cronPage() {
  const { cron } = await api("/api/dashboard/cron");
  show(h("h1", {}, "Cron"), cron.length ? table(["Name", "Function", "Schedule", "Time zone", "Next run", "Last run"],
    cron.map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.function), h("td", {}, h("code", {}, c.schedule)), h("td", {}, c.tz),
      h("td", {}, fmtTime(c.next_run_ms)),
      h("td", {}, c.last && c.last.status !== "not_found" ? [jobLink(c.last.job_id), " ", status(c.last.status)] : "not run yet"))))
    : h("p", { class: "muted" }, "No periodic jobs."));
}

async function workersPage() {
  const workers = list(await api("/api/workers"), "workers", "items");
  show(h("h1", {}, "Workers"), workers.length ? table(["Host", "PID", "Queues", "Concurrency", "Running", "Done / failed", "Last heartbeat"],
    workers.map((w) => h("tr", {}, h("td", {}, w.host), h("td", {}, w.pid), h("td", {}, (w.queues || []).join(", ")),
      h("td", {}, w.concurrency), h("td", {}, w.running), h("td", {}, `${w.jobs_complete ?? "—"} / ${w.jobs_failed ?? "—"}`),
      h("td", {}, fmtTime(w.heartbeat_ms))))) : h("p", { class: "muted" }, "No workers online."));
}

async function enqueuePage(query) {
  const funcs = await functions();
  const select = h("select", { name: "function", id: "function" }, funcs.map((f) =>
    h("option", { value: f.name, selected: query.get("function") === f.name }, f.name)));
  const fieldsBox = h("div");
  const general = h("p", { class: "error", id: "form-error" });
  const form = h("form", { id: "enqueue", onsubmit: (e) => { e.preventDefault(); submit(); } },
    h("div", { class: "field" }, h("label", {}, "Function", select)), fieldsBox, general, h("button", { type: "submit" }, "Enqueue"));
  show(h("h1", {}, "Enqueue a job"), form);
  let inputs = {};
  const draw = () => {
    const f = funcs.find((x) => x.name === select.value);
    inputs = {};
    const schema = f?.schema || f?.parameters || {};
    const required = new Set(schema.required || []);
    fill(fieldsBox, h("div", {}, f?.doc || f?.description ? h("p", { class: "muted" }, f.doc || f.description) : "",
      Object.entries(schema.properties || {}).map(([name, prop]) => {
        const input = fieldFor(name, prop, required.has(name));
        inputs[name] = { input, prop, err: h("div", { class: "err", "data-error-for": name }) };
        return h("div", { class: "field" }, h("label", {}, `${name}${required.has(name) ? " *" : ""}`, input), inputs[name].err);
      })));
  };
  select.addEventListener("change", draw);
  draw();
  async function submit() {
    general.textContent = "";
    Object.values(inputs).forEach((i) => (i.err.textContent = ""));
    const kwargs = {};
    for (const [name, { input, prop, err }] of Object.entries(inputs)) {
      try { const v = readField(input, prop); if (v !== undefined) kwargs[name] = v; } catch { err.textContent = "not valid JSON"; return; }
    }
    try {
      const created = await api("/api/jobs", { method: "POST", body: { function: select.value, args: [], kwargs } });
      location.hash = `#/job/${encodeURIComponent(jobId(created))}`;
    } catch (e) {
      if (e instanceof AuthError) return;
      const details = e.data?.error?.details;
      let placed = false;
      for (const d of Array.isArray(details) ? details : []) {
        const name = [...(d.loc || [])].reverse().find((p) => inputs[p]);
        if (name) { inputs[name].err.textContent = d.msg || d.message; placed = true; }
      }
      if (!placed) general.textContent = e.message;
    }
  }
}

function fieldFor(name, prop, required) {
  const type = prop.type;
  const common = { name, id: `f-${name}`, required: required && type !== "boolean" };
  if (prop.enum) return h("select", common, prop.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
  if (type === "boolean") return h("input", { ...common, type: "checkbox", checked: prop.default === true });
  if (type === "integer" || type === "number") {
    return h("input", { ...common, type: "number", step: type === "integer" ? "1" : "any", value: prop.default ?? "" });
  }
  if (type === "string") return h("input", { ...common, type: "text", value: prop.default ?? "" });
  return h("textarea", { ...common, rows: 3, placeholder: "JSON" }, prop.default !== undefined ? JSON.stringify(prop.default) : "");
}

function readField(input, prop) {
  if (prop.enum) return JSON.parse(input.value);
  if (prop.type === "boolean") return input.checked;
  if (input.value === "") return undefined;
  if (prop.type === "integer" || prop.type === "number") return Number(input.value);
  if (prop.type === "string") return input.value;
  return JSON.parse(input.value);
}

// --- router --------------------------------------------------------------------------
const routes = [
  [/^#\/?$/, overviewPage], [/^#\/jobs$/, jobsPage], [/^#\/job\/(.+)$/, (q, id) => jobPage(decodeURIComponent(id))],
  [/^#\/dead$/, deadPage], [/^#\/cron$/, cronPage], [/^#\/workers$/, workersPage], [/^#\/enqueue$/, enqueuePage],
];

async function route() {
  live.close();
  const [path, qs] = (location.hash || "#/").split("?");
  const query = new URLSearchParams(qs || "");
  document.getElementById("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === path);
  for (const [re, page] of routes) {
    const m = path.match(re);
    if (!m) continue;
    try { await page(query, ...m.slice(1)); } catch (e) { if (!(e instanceof AuthError)) show(h("p", { class: "error", role: "alert" }, e.message)); }
    if (!live.params && !(main.querySelector("#login"))) live.open({}, {});
    return;
  }
  show(h("p", {}, "Page not found."));
}

document.getElementById("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); login("Signed out."); });
window.addEventListener("hashchange", route);
route();

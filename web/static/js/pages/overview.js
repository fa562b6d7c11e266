// #/ : totals, queues, the throughput chart, the event feed and a form that opens a workflow.
import { alertError, api } from "../api.js";
import { fill, h, jobLink, show, table } from "../dom.js";
import { fmtAge } from "../format.js";
import { live } from "../live.js";

export async function overviewPage() {
  const cards = h("div", { class: "cards" });
  const queues = h("div");
  const chartBox = h("div", { id: "chart" });
  const feed = h("ul", { class: "feed", id: "feed" });
  const openWorkflow = (e) => {
    e.preventDefault();
    const id = e.target.elements.workflow.value.trim();
    if (id) location.hash = `#/workflows/${encodeURIComponent(id)}`;
  };
  show(h("h1", {}, "Overview"), cards, h("h2", {}, "Queues"), queues,
    h("h2", {}, "Throughput (jobs per second)"), chartBox, h("h2", {}, "Event feed"), feed,
    h("h2", {}, "Workflows"), h("form", { class: "filters", id: "open-workflow", onsubmit: openWorkflow },
      h("label", {}, "Workflow id", h("input", { name: "workflow", required: true })), h("button", { type: "submit" }, "Open")));
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

// uPlot: the global of vendor/uPlot.iife.min.js, a classic script loaded before the modules
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

// pause or resume a queue (flow control): a paused queue stays listed, its jobs stay queued
function pauseButton(q, refresh) {
  const action = q.paused ? "resume" : "pause";
  return h("button", { id: `${action}-${q.name}`, onclick: () =>
    api(`/api/queues/${encodeURIComponent(q.name)}/${action}`, { method: "POST" }).then(refresh, alertError) },
  q.paused ? "Resume" : "Pause");
}

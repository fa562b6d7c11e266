// #/job/<id> : one job's record, progress and events, with abort and retry.
import { alertError, api, jobId } from "../api.js";
import { fill, h, show, status } from "../dom.js";
import { fmtTime, json } from "../format.js";
import { live } from "../live.js";
import { reload } from "../nav.js";

export async function jobPage(id) {
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
        ["Workflow", rec.workflow && h("a", { id: "workflow", href: `#/workflows/${encodeURIComponent(rec.workflow)}` }, rec.workflow)],
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

async function abortJob(id) {
  if (!confirm(`Abort job ${id}?`)) return;
  await api(`/api/jobs/${encodeURIComponent(id)}/abort`, { method: "POST" }).catch((e) => alertError(e));
}

async function retryJob(rec) {
  try {
    await api(`/api/dead/${encodeURIComponent(rec.job_id)}/retry`, { method: "POST" });
    reload();
  } catch (e) {
    if (e.status !== 404) return alertError(e);
    const created = await api("/api/jobs", { method: "POST", body: { function: rec.function, args: rec.args, kwargs: rec.kwargs } });
    location.hash = `#/job/${encodeURIComponent(jobId(created))}`;
  }
}

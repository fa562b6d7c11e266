// #/workers : the live worker processes.
import { api, list } from "../api.js";
import { h, show, table } from "../dom.js";
import { fmtTime } from "../format.js";

export async function workersPage() {
  const workers = list(await api("/api/workers"), "workers", "items");
  show(h("h1", {}, "Workers"), workers.length ? table(["Host", "PID", "Queues", "Concurrency", "Running", "Done / failed", "Last heartbeat"],
    workers.map((w) => h("tr", {}, h("td", {}, w.host), h("td", {}, w.pid), h("td", {}, (w.queues || []).join(", ")),
      h("td", {}, w.concurrency), h("td", {}, w.running), h("td", {}, `${w.jobs_complete ?? "—"} / ${w.jobs_failed ?? "—"}`),
      h("td", {}, fmtTime(w.heartbeat_ms))))) : h("p", { class: "muted" }, "No workers online."));
}

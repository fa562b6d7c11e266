// #/dead : dead letters, retried or purged one by one or all at once.
import { alertError, api, list } from "../api.js";
import { fill, h, jobLink, show, table } from "../dom.js";
import { fmtTime } from "../format.js";
import { live } from "../live.js";

export async function deadPage() {
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

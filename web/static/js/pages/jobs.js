// #/jobs : recent jobs, filtered by state, queue, function and text, a page at a time.
import { api, functions } from "../api.js";
import { fill, h, jobLink, show, status, table } from "../dom.js";
import { fmtTime } from "../format.js";

export async function jobsPage(query) {
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

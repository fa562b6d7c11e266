// #/cron : the periodic jobs, their next run and their last.
import { api } from "../api.js";
import { h, jobLink, show, status, table } from "../dom.js";
import { fmtTime } from "../format.js";

export async function cronPage() {
  const { cron } = await api("/api/dashboard/cron");
  show(h("h1", {}, "Cron"), cron.length ? table(["Name", "Function", "Schedule", "Time zone", "Next run", "Last run"],
    cron.map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.function), h("td", {}, h("code", {}, c.schedule)), h("td", {}, c.tz),
      h("td", {}, fmtTime(c.next_run_ms)),
      h("td", {}, c.last && c.last.status !== "not_found" ? [jobLink(c.last.job_id), " ", status(c.last.status)] : "not run yet"))))
    : h("p", { class: "muted" }, "No periodic jobs."));
}

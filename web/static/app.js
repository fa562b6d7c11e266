// asyncjobs dashboard: a hash-routed page over the HTTP API, as native ES modules (no build
// step). This module is the router; each page lives in js/pages/, the shared parts in js/
// (dom: elements and tables, format, api: fetch with the token, live: the event stream).
import { AuthError, onUnauthorized, TOKEN_KEY } from "./js/api.js";
import { login } from "./js/auth.js";
import { h, main, show } from "./js/dom.js";
import { live } from "./js/live.js";
import { cronPage } from "./js/pages/cron.js";
import { deadPage } from "./js/pages/dead.js";
import { enqueuePage } from "./js/pages/enqueue.js";
import { jobPage } from "./js/pages/job.js";
import { jobsPage } from "./js/pages/jobs.js";
import { overviewPage } from "./js/pages/overview.js";
import { workersPage } from "./js/pages/workers.js";
import { workflowPage } from "./js/pages/workflow.js";

const routes = [
  [/^#\/?$/, overviewPage], [/^#\/jobs$/, jobsPage], [/^#\/job\/(.+)$/, (q, id) => jobPage(decodeURIComponent(id))],
  [/^#\/dead$/, deadPage], [/^#\/cron$/, cronPage], [/^#\/workers$/, workersPage], [/^#\/enqueue$/, enqueuePage],
  [/^#\/workflows\/(.+)$/, (q, id) => workflowPage(decodeURIComponent(id))],
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

onUnauthorized(() => login());
document.getElementById("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); login("Signed out."); });
window.addEventListener("hashchange", route);
route();

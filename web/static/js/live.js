// Live events: one EventSource at a time, reopened with a fresh ticket after a drop.
// An open stream says only that this server answers: the badge reads "degraded" while its
// /readyz says Redis is down (checked when the stream opens and every HEALTH_MS after).
import { api, AuthError } from "./api.js";

const conn = document.getElementById("conn");
const HEALTH_MS = 3000;

export const live = {
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

// The HTTP API as the pages use it: the token from the sign-in form, JSON in and out, errors
// as exceptions (a 401 calls the handler set with onUnauthorized, then throws AuthError).
import { h, main } from "./dom.js";

export const TOKEN_KEY = "asyncjobs.token";

export class AuthError extends Error {}

let unauthorized = () => {};
export function onUnauthorized(handler) { unauthorized = handler; }

export async function api(path, { method = "GET", body } = {}) {
  const headers = { "X-Asyncjobs-Request": "1" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) { unauthorized(); throw new AuthError("unauthorized"); }
  if (!resp.ok) { const e = new Error(data.error?.message || resp.statusText); e.status = resp.status; e.data = data; throw e; }
  return data;
}
export const list = (data, ...names) => (Array.isArray(data) ? data : names.map((n) => data[n]).find(Array.isArray) || []);

let functionsCache = null;
export async function functions() {
  functionsCache ||= list(await api("/api/functions"), "functions", "items");
  return functionsCache;
}

export const jobId = (r) => r.job_id || r.id || r.job?.job_id;
export function alertError(e) { if (!(e instanceof AuthError)) main.prepend(h("p", { class: "error", role: "alert" }, e.message)); }

// DOM helpers. Every piece of user data goes into the DOM as text (h() never sets innerHTML),
// so job arguments cannot inject markup.

export const main = document.getElementById("main");

export function h(tag, attrs, ...kids) {
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
export const nodes = (kids) => kids.flat(Infinity).filter((k) => k != null && k !== false)
  .map((k) => (k instanceof Node ? k : document.createTextNode(String(k))));
export const fill = (el, ...kids) => el.replaceChildren(...nodes(kids));
export const show = (...kids) => fill(main, ...kids);
export const status = (s) => h("span", { class: `status ${s}`, "data-status": s }, s);
export const jobLink = (id) => h("a", { href: `#/job/${encodeURIComponent(id)}` }, id);
export const table = (head, rows) =>
  h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, rows)));

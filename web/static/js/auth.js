// The sign-in form, shown when the API answers 401 (the token is kept for this tab only).
import { TOKEN_KEY } from "./api.js";
import { h, show } from "./dom.js";
import { live } from "./live.js";
import { reload } from "./nav.js";

export function login(message) {
  live.close();
  sessionStorage.removeItem(TOKEN_KEY);
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true });
  show(h("h1", {}, "Sign in"),
    h("form", { id: "login", onsubmit: (e) => { e.preventDefault(); sessionStorage.setItem(TOKEN_KEY, input.value); reload(); } },
      h("p", { class: "muted" }, message || "This dashboard is protected by the API token (ASYNCJOBS_API_TOKEN)."),
      h("div", { class: "field" }, h("label", {}, "API token", input)), h("button", {}, "Sign in")));
  input.focus();
}

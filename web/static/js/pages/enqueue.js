// #/enqueue : a form built from the function's JSON Schema; errors shown next to their field.
import { api, AuthError, functions, jobId } from "../api.js";
import { fill, h, show } from "../dom.js";

export async function enqueuePage(query) {
  const funcs = await functions();
  const select = h("select", { name: "function", id: "function" }, funcs.map((f) =>
    h("option", { value: f.name, selected: query.get("function") === f.name }, f.name)));
  const fieldsBox = h("div");
  const general = h("p", { class: "error", id: "form-error" });
  const form = h("form", { id: "enqueue", onsubmit: (e) => { e.preventDefault(); submit(); } },
    h("div", { class: "field" }, h("label", {}, "Function", select)), fieldsBox, general, h("button", { type: "submit" }, "Enqueue"));
  show(h("h1", {}, "Enqueue a job"), form);
  let inputs = {};
  const draw = () => {
    const f = funcs.find((x) => x.name === select.value);
    inputs = {};
    const schema = f?.schema || f?.parameters || {};
    const required = new Set(schema.required || []);
    fill(fieldsBox, h("div", {}, f?.doc || f?.description ? h("p", { class: "muted" }, f.doc || f.description) : "",
      Object.entries(schema.properties || {}).map(([name, prop]) => {
        const input = fieldFor(name, prop, required.has(name));
        inputs[name] = { input, prop, err: h("div", { class: "err", "data-error-for": name }) };
        return h("div", { class: "field" }, h("label", {}, `${name}${required.has(name) ? " *" : ""}`, input), inputs[name].err);
      })));
  };
  select.addEventListener("change", draw);
  draw();
  async function submit() {
    general.textContent = "";
    Object.values(inputs).forEach((i) => (i.err.textContent = ""));
    const kwargs = {};
    for (const [name, { input, prop, err }] of Object.entries(inputs)) {
      try { const v = readField(input, prop); if (v !== undefined) kwargs[name] = v; } catch { err.textContent = "not valid JSON"; return; }
    }
    try {
      const created = await api("/api/jobs", { method: "POST", body: { function: select.value, args: [], kwargs } });
      location.hash = `#/job/${encodeURIComponent(jobId(created))}`;
    } catch (e) {
      if (e instanceof AuthError) return;
      const details = e.data?.error?.details;
      let placed = false;
      for (const d of Array.isArray(details) ? details : []) {
        const name = [...(d.loc || [])].reverse().find((p) => inputs[p]);
        if (name) { inputs[name].err.textContent = d.msg || d.message; placed = true; }
      }
      if (!placed) general.textContent = e.message;
    }
  }
}

function fieldFor(name, prop, required) {
  const type = prop.type;
  const common = { name, id: `f-${name}`, required: required && type !== "boolean" };
  if (prop.enum) return h("select", common, prop.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
  if (type === "boolean") return h("input", { ...common, type: "checkbox", checked: prop.default === true });
  if (type === "integer" || type === "number") {
    return h("input", { ...common, type: "number", step: type === "integer" ? "1" : "any", value: prop.default ?? "" });
  }
  if (type === "string") return h("input", { ...common, type: "text", value: prop.default ?? "" });
  return h("textarea", { ...common, rows: 3, placeholder: "JSON" }, prop.default !== undefined ? JSON.stringify(prop.default) : "");
}

function readField(input, prop) {
  if (prop.enum) return JSON.parse(input.value);
  if (prop.type === "boolean") return input.checked;
  if (input.value === "") return undefined;
  if (prop.type === "integer" || prop.type === "number") return Number(input.value);
  if (prop.type === "string") return input.value;
  return JSON.parse(input.value);
}

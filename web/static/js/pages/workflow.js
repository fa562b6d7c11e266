// #/workflows/<id> : a workflow's graph, its nodes in layers by depth from the roots (left to
// right), an edge from each parent to each child; each node shows its state and opens its job.
// The page polls GET /api/workflows/<id> until the workflow ends or the page is left.
import { api } from "../api.js";
import { fill, h, show, status } from "../dom.js";
import { fmtTime } from "../format.js";

const POLL_MS = 1000;
const MAX_DRAWN = 300;
const W = 190, H = 46, GAP_X = 60, GAP_Y = 16, PAD = 8, LANE = 20;
const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  for (const k of kids) el.append(typeof k === "string" ? document.createTextNode(k) : k);
  return el;
}

// depth of each node: the longest path from a root (a node none of the drawn nodes points at)
function layers(nodes) {
  const ids = new Set(nodes.map((n) => n.job_id));
  const parents = new Map(nodes.map((n) => [n.job_id, 0]));
  for (const n of nodes) for (const c of n.children) if (ids.has(c)) parents.set(c, parents.get(c) + 1);
  const depth = new Map();
  const ready = nodes.filter((n) => parents.get(n.job_id) === 0).map((n) => n.job_id);
  const byId = new Map(nodes.map((n) => [n.job_id, n]));
  for (const id of ready) depth.set(id, 0);
  while (ready.length) {
    const id = ready.shift();
    for (const c of byId.get(id).children) {
      if (!ids.has(c)) continue;
      depth.set(c, Math.max(depth.get(c) ?? 0, depth.get(id) + 1));
      parents.set(c, parents.get(c) - 1);
      if (parents.get(c) === 0) ready.push(c);
    }
  }
  return depth;
}

// parent's right side to child's left side: a curve to the next layer, else via the top lane
function edgePath(p, q) {
  const [x1, y1, x2, y2] = [p.x + W, p.y + H / 2, q.x, q.y + H / 2];
  if (x2 - x1 <= GAP_X) {
    const mid = (x1 + x2) / 2;
    return `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
  }
  const [a, b, lane] = [x1 + GAP_X / 2, x2 - GAP_X / 2, PAD + LANE / 2];
  return `M${x1},${y1} C${a},${y1} ${a},${lane} ${x1 + GAP_X},${lane} L${x2 - GAP_X},${lane} C${b},${lane} ${b},${y2} ${x2},${y2}`;
}

const clip = (s, n = 26) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function drawGraph(wfId, nodes) {
  const depth = layers(nodes);
  // an edge that skips layers runs along a lane above the boxes instead of through them
  const skips = nodes.some((n) => n.children.some((c) => depth.has(c) && depth.get(c) > depth.get(n.job_id) + 1));
  const top = skips ? PAD + LANE : PAD;
  const rows = [];
  const at = new Map();
  for (const n of nodes) {
    const d = depth.get(n.job_id) ?? 0;
    rows[d] = (rows[d] || 0) + 1;
    at.set(n.job_id, { x: PAD + d * (W + GAP_X), y: top + (rows[d] - 1) * (H + GAP_Y) });
  }
  const width = PAD * 2 + rows.length * (W + GAP_X) - GAP_X;
  const height = top + PAD + Math.max(1, ...rows.filter(Boolean)) * (H + GAP_Y) - GAP_Y;
  const edges = svg("g", { class: "edges" });
  const boxes = svg("g", { class: "nodes" });
  const shown = new Map();
  for (const n of nodes) {
    const p = at.get(n.job_id);
    for (const c of n.children) {
      const q = at.get(c);
      if (!q) continue;
      edges.append(svg("path", { class: "edge", "data-from": n.job_id, "data-to": c, d: edgePath(p, q),
        "marker-end": "url(#arrow)" }));
    }
    const name = n.job_id.startsWith(`${wfId}.`) ? n.job_id.slice(wfId.length + 1) : n.job_id;
    const line2 = svg("text", { x: p.x + 10, y: p.y + 36, class: "state-text" });
    const title = svg("title", {});
    const g = svg("g", { class: "node", "data-job": n.job_id, tabindex: "0", role: "link" },
      title, svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
      svg("text", { x: p.x + 10, y: p.y + 18, class: "name" }, clip(name)), line2);
    const open = () => { location.hash = `#/job/${encodeURIComponent(n.job_id)}`; };
    g.addEventListener("click", open);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    boxes.append(g);
    shown.set(n.job_id, { g, line2, title, name });
  }
  const arrow = svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4, markerWidth: 7, markerHeight: 7,
    orient: "auto" }, svg("path", { d: "M0,0 L8,4 L0,8 z" }));
  const el = svg("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "workflow graph" }, svg("defs", {}, arrow), edges, boxes);
  return { el, shown };
}

function paint(shown, nodes) {
  for (const n of nodes) {
    const s = shown.get(n.job_id);
    if (!s) continue;
    s.g.setAttribute("class", `node ${n.state}`);
    s.g.setAttribute("data-state", n.state);
    s.line2.textContent = clip(`${n.function || "?"} · ${n.state}`, 28);
    s.title.textContent = `${n.job_id}\n${n.function || "?"}: ${n.state}${n.reason ? ` (${n.reason})` : ""}`;
  }
}

function summary(wf, capped) {
  return [
    h("div", { class: "actions" }, status(wf.state),
      h("span", { id: "wf-progress" }, `${wf.ended} of ${wf.total} nodes ended`),
      wf.failed ? h("span", { class: "error" }, `${wf.failed} failed`) : null,
      wf.aborted ? h("span", { class: "error" }, "aborted") : null),
    h("dl", {}, [["Created", fmtTime(wf.created_ms)], ["Ended", fmtTime(wf.ended_ms)],
      ["First failure", wf.failed_node]].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")])),
    capped && h("p", { class: "muted", id: "wf-capped" }, `Showing the first ${MAX_DRAWN} of ${wf.nodes.length} nodes.`),
  ];
}

export async function workflowPage(id) {
  const head = h("div");
  const box = h("div", { class: "scroll graph-box", id: "graph" });
  show(h("h1", {}, "Workflow ", h("span", { class: "wrap" }, id)), head, box);
  const path = `/api/workflows/${encodeURIComponent(id)}`;
  let wf = await api(path);
  const capped = wf.nodes.length > MAX_DRAWN;
  const { el, shown } = drawGraph(id, wf.nodes.slice(0, MAX_DRAWN));
  box.append(el);
  const render = () => { fill(head, summary(wf, capped)); paint(shown, wf.nodes); };
  render();
  (async () => {
    while (box.isConnected && wf.state !== "ended") {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (!box.isConnected) return;
      try { wf = await api(path); render(); } catch { /* kept: the next poll tries again */ }
    }
  })();
}

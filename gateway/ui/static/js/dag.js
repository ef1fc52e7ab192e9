// A workflow's DAG as SVG: laid out by dagre (vendored), nodes by type, edges with the labels of the
// branches that route them (conditional, switch, approval, error edges), map nodes drawn as a stack with
// a bar of their items. `drawDag` returns handles to show each node's state as the job runs.

import dagre from "../vendor/dagre-3.1.3.esm.min.js";
import { STATUS_ICONS, svg } from "./dom.js";

const NODE_WIDTH = 184;
const NODE_HEIGHT = 58;
const STACK_OFFSET = 5;
const MAX_LABEL_CHARS = 22;

function clip(text, limit = MAX_LABEL_CHARS) {
  const value = String(text);
  return value.length > limit ? `${value.slice(0, limit - 1)}…` : value;
}

function caseLabel(item, index) {
  if (item && "equals" in item) return `= ${clip(JSON.stringify(item.equals), 16)}`;
  if (item && typeof item.condition === "string") return clip(item.condition, 18);
  return `case ${index + 1}`;
}

/** The labels of the edges a node routes: {target: label}. */
export function branchLabels(node) {
  const config = node.config ?? {};
  const labels = {};
  if (node.type === "conditional") {
    if (typeof config.true_edge === "string") labels[config.true_edge] = "true";
    if (typeof config.false_edge === "string") labels[config.false_edge] = "false";
  }
  if (node.type === "approval") {
    if (typeof config.approve_edge === "string") labels[config.approve_edge] = "approved";
    if (typeof config.reject_edge === "string") labels[config.reject_edge] ??= "rejected";
  }
  if (node.type === "switch") {
    (Array.isArray(config.cases) ? config.cases : []).forEach((item, index) => {
      if (item && typeof item.target === "string") labels[item.target] ??= caseLabel(item, index);
    });
    if (typeof config.default === "string") labels[config.default] ??= "default";
  }
  if (node.on_error === "error_edge" && typeof node.error_edge === "string") labels[node.error_edge] = "on error";
  return labels;
}

/** What a map node runs per item: a node type, or "sub-graph". */
export function mapChild(node) {
  if (node.type !== "map") return null;
  if (node.config?.node?.type) return String(node.config.node.type);
  return node.config?.graph ? "sub-graph" : "?";
}

function layout(definition) {
  const graph = new dagre.graphlib.Graph({ multigraph: true });
  graph.setGraph({ rankdir: "LR", nodesep: 28, ranksep: 64, marginx: 16, marginy: 16 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const node of definition.nodes) graph.setNode(node.id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  const labelsBySource = new Map(definition.nodes.map((node) => [node.id, branchLabels(node)]));
  definition.edges.forEach((edge, index) => {
    const label = labelsBySource.get(edge.source)?.[edge.target];
    const size = label ? { width: label.length * 7 + 10, height: 18, labelpos: "c" } : {};
    graph.setEdge(edge.source, edge.target, { label, ...size }, `e${index}`);
  });
  dagre.layout(graph);
  return graph;
}

function edgePath(points) {
  return points.map((point, index) => `${index ? "L" : "M"}${point.x.toFixed(1)},${point.y.toFixed(1)}`).join(" ");
}

function drawNode(spec, box, onSelect) {
  const left = box.x - NODE_WIDTH / 2;
  const top = box.y - NODE_HEIGHT / 2;
  const child = mapChild(spec);
  const parts = [svg("title", {}, `${spec.id} (${spec.type})`)];
  if (child) {
    for (const shift of [2 * STACK_OFFSET, STACK_OFFSET]) {
      parts.push(svg("rect", { class: "stack", x: shift, y: -shift, width: NODE_WIDTH, height: NODE_HEIGHT, rx: 7 }));
    }
  }
  parts.push(
    svg("rect", { class: "body", width: NODE_WIDTH, height: NODE_HEIGHT, rx: 7 }),
    svg("rect", { class: `stripe type-${spec.type}`, width: 6, height: NODE_HEIGHT, rx: 3 }),
    svg("text", { class: "label", x: 16, y: 22 }, clip(spec.name || spec.id)),
    svg("text", { class: "type", x: 16, y: 40 }, child ? `map × ${child}` : spec.type),
  );
  const icon = svg("text", { class: "icon", x: NODE_WIDTH - 12, y: 24, "text-anchor": "end" }, STATUS_ICONS.pending);
  parts.push(icon);
  let bar = null;
  if (child) {
    const fill = svg("rect", { class: "bar-fill", x: 16, y: 47, width: 0, height: 5, rx: 2 });
    const count = svg("text", { class: "bar-text", x: NODE_WIDTH - 12, y: 41, "text-anchor": "end" }, "");
    parts.push(svg("rect", { class: "bar", x: 16, y: 47, width: NODE_WIDTH - 32, height: 5, rx: 2 }), fill, count);
    bar = { fill, count };
  }
  const group = svg(
    "g",
    {
      class: "dag-node status-pending",
      transform: `translate(${left.toFixed(1)},${top.toFixed(1)})`,
      tabindex: 0,
      role: "button",
      dataset: { nodeId: spec.id, status: "pending", type: spec.type },
      onclick: () => onSelect(spec.id),
      onkeydown: (event) => {
        if (event.key === "Enter" || event.key === " ") onSelect(spec.id);
      },
    },
    parts,
  );
  return { group, icon, bar };
}

/** Draw `definition` into `container`; returns {setState, setProgress, select}. */
export function drawDag(container, definition, { onSelect = () => {} } = {}) {
  const graph = layout(definition);
  const { width = 200, height = 100 } = graph.graph();
  const arrow = svg(
    "marker",
    { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }),
  );
  const edges = [];
  const edgeLayer = svg("g", { class: "edges" });
  for (const key of graph.edges()) {
    const data = graph.edge(key);
    const path = svg("path", { class: "edge", d: edgePath(data.points ?? []), "marker-end": "url(#arrow)" });
    const group = svg("g", { class: "dag-edge", dataset: { source: key.v, target: key.w } }, path);
    if (data.label) {
      group.append(
        svg("rect", { class: "edge-label-bg", x: data.x - data.width / 2, y: data.y - 9, width: data.width, height: 18, rx: 4 }),
        svg("text", { class: "edge-label", x: data.x, y: data.y + 4, "text-anchor": "middle" }, data.label),
      );
    }
    edges.push(group);
    edgeLayer.append(group);
  }
  const nodes = new Map();
  const nodeLayer = svg("g", { class: "nodes" });
  for (const spec of definition.nodes) {
    const drawn = drawNode(spec, graph.node(spec.id), (id) => handles.select(id) || onSelect(id));
    nodes.set(spec.id, drawn);
    nodeLayer.append(drawn.group);
  }
  const picture = svg(
    "svg",
    { class: "dag", width: Math.ceil(width), height: Math.ceil(height), viewBox: `0 0 ${Math.ceil(width)} ${Math.ceil(height)}` },
    svg("defs", {}, arrow),
    edgeLayer,
    nodeLayer,
  );
  container.replaceChildren(picture);

  const handles = {
    setState(nodeId, status) {
      const drawn = nodes.get(nodeId);
      if (!drawn || drawn.group.dataset.status === status) return;
      drawn.group.classList.remove(`status-${drawn.group.dataset.status}`);
      drawn.group.classList.add(`status-${status}`);
      drawn.group.dataset.status = status;
      drawn.icon.textContent = STATUS_ICONS[status] ?? "?";
      for (const edge of edges) {
        if (edge.dataset.target === nodeId) edge.classList.toggle("not-taken", status === "skipped");
      }
    },
    setProgress(nodeId, progress) {
      const drawn = nodes.get(nodeId);
      if (!drawn?.bar || !progress) return;
      const done = (progress.succeeded ?? 0) + (progress.failed ?? 0);
      const total = progress.total ?? 0;
      drawn.bar.fill.setAttribute("width", total ? ((NODE_WIDTH - 32) * done) / total : 0);
      drawn.bar.fill.classList.toggle("with-failures", (progress.failed ?? 0) > 0);
      drawn.bar.count.textContent = `${done}/${total}`;
      drawn.group.dataset.progress = `${done}/${total}`;
    },
    select(nodeId) {
      for (const [id, drawn] of nodes) drawn.group.classList.toggle("selected", id === nodeId);
      return false;
    },
  };
  return handles;
}

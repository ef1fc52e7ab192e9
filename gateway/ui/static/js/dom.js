// Building the page without ever parsing a string as HTML: every value becomes a text node or an
// attribute set with setAttribute, links may only point inside the page, and event handlers must be
// functions. (The Content-Security-Policy's Trusted Types would refuse innerHTML anyway.)

const SVG_NS = "http://www.w3.org/2000/svg";

function put(node, props) {
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`${key} must be a function`);
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "href") {
      node.setAttribute("href", pageLink(value));
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

/** An element: `el("a", {href: "#/jobs", class: "x"}, "text", otherNode)`. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  put(node, props);
  append(node, children);
  return node;
}

/** An SVG element, the same way. */
export function svg(tag, props = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  put(node, props);
  append(node, children);
  return node;
}

/** Only links within the page (`#/...`) are made; anything else becomes a link to nowhere. */
export function pageLink(target) {
  const text = String(target);
  return text.startsWith("#/") ? text : "#/";
}

export function replaceChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/** A term and its value, for a `<dl class="facts">`. */
export function field(label, value, id) {
  return [el("dt", {}, label), el("dd", { id }, value)];
}

/** JSON shown as text, indented. */
export function jsonBlock(value, props = {}) {
  return el("pre", { class: "json", ...props }, value === undefined ? "" : JSON.stringify(value, null, 2));
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

export function formatTime(iso) {
  if (!iso) return "–";
  const time = new Date(iso);
  return Number.isNaN(time.getTime()) ? String(iso) : time.toLocaleString();
}

export function shortId(id) {
  const text = String(id);
  return text.length > 12 ? `${text.slice(0, 8)}…` : text;
}

/** A link to a job's page, showing its short id unless told what to show. */
export function jobLink(jobId, props = {}, text = shortId(jobId)) {
  return el("a", { href: `#/jobs/${encodeURIComponent(jobId)}`, class: "mono", ...props }, text);
}

export function statusBadge(status) {
  return el("span", { class: `badge status-${status}`, dataset: { status } }, `${STATUS_ICONS[status] ?? "?"} ${status}`);
}

/** Each node and job state's icon; colours live in app.css as `.status-<state>`. */
export const STATUS_ICONS = {
  pending: "○",
  running: "▶",
  retrying: "↻",
  waiting: "◷",
  completed: "✓",
  failed: "✕",
  skipped: "↷",
  cancelled: "⊘",
};

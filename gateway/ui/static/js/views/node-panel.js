// The panel of the node selected on a job's page: its state, attempts, timings, what it waits for (with an
// approval's decision), a workflow node's child jobs (links to their pages, with their statuses), error,
// the text an LLM streams, its output, the config it ran with (templates rendered, secrets masked) and its
// log lines. A child's status is read once from the service, then its `child_job_finished` event in the
// parent's stream says how it ended.

import { request, segment } from "../api.js";
import { el, field, formatDuration, formatTime, jobLink, jsonBlock, replaceChildren, statusBadge } from "../dom.js";
import { waitBox } from "./wait-box.js";

const LOG_LIMIT = 200;

function seconds(node) {
  if (!node.started_at || !node.finished_at) return null;
  return (Date.parse(node.finished_at) - Date.parse(node.started_at)) / 1000;
}

export function nodePanel(jobId, onClose) {
  const title = el("h2", { id: "node-title" });
  const facts = el("dl", { class: "facts", id: "node-facts" });
  const wait = waitBox(jobId);
  const children = el("ul", { class: "children", id: "node-children" });
  const childrenBox = el("section", { hidden: true }, el("h3", {}, "Child jobs"), children);
  const error = el("div", { id: "node-error" });
  const tokens = el("pre", { class: "tokens", id: "node-tokens" });
  const tokensBox = el("section", { hidden: true }, el("h3", {}, "Streamed text"), tokens);
  const output = el("div", { id: "node-output" });
  const config = el("div", { id: "node-config" });
  const logs = el("ol", { class: "log", id: "node-log" });
  const element = el(
    "aside",
    { class: "panel node-panel", id: "node-panel", hidden: true },
    el("button", { type: "button", class: "link close", onclick: onClose, "aria-label": "Close" }, "✕"),
    title,
    facts,
    wait.element,
    childrenBox,
    error,
    tokensBox,
    el("section", {}, el("h3", {}, "Output"), output),
    el("section", {}, el("h3", {}, "Input config, as rendered"), config),
    el("section", {}, el("h3", {}, "Log"), logs),
  );
  let shown = null;
  let shownKey = "";
  let logsWanted = 0;
  let childrenKey = "";
  const childrenRead = new Set();
  const childProblems = new Map();

  async function loadLogs(nodeId) {
    const ticket = ++logsWanted;
    const page = await request(`/api/v1/jobs/${segment(jobId)}/logs`, { query: { node_id: nodeId, limit: LOG_LIMIT } });
    if (ticket !== logsWanted || shown !== nodeId) return;
    replaceChildren(
      logs,
      page.items.length ? null : el("li", { class: "muted" }, "No log lines yet."),
      page.items.map((entry) =>
        el(
          "li",
          { class: `level-${entry.level}` },
          el("span", { class: "muted" }, new Date(entry.time).toLocaleTimeString()),
          " ",
          el("span", { class: "level" }, entry.level),
          " ",
          entry.message,
          Object.keys(entry.data ?? {}).length ? el("code", {}, ` ${JSON.stringify(entry.data)}`) : null,
        ),
      ),
      page.total > page.items.length ? el("li", { class: "muted" }, `… ${page.total - page.items.length} more`) : null,
    );
  }

  /** Read each child whose status neither a read nor an event has told yet, once. */
  function readChildren(model, nodeId) {
    for (const child of model.childrenOf(nodeId)) {
      if (child.status !== undefined || childrenRead.has(child.id)) continue;
      childrenRead.add(child.id);
      request(`/api/v1/jobs/${segment(child.id)}`)
        .then((job) => model.mergeChild(nodeId, job))
        .catch((failure) => childProblems.set(child.id, failure.message))
        .finally(() => update(model));
    }
  }

  /** The links to a workflow node's children; redrawn only when they change, so a link stays clickable. */
  function renderChildren(model, node) {
    childrenBox.hidden = node.node_type !== "workflow";
    if (childrenBox.hidden) return;
    readChildren(model, node.node_id);
    const known = model.childrenOf(node.node_id);
    const key = [node.node_id, ...known.map((child) => `${child.id}:${child.status}:${childProblems.get(child.id) ?? ""}`)].join(" ");
    if (key === childrenKey) return;
    childrenKey = key;
    replaceChildren(
      children,
      known.length ? null : el("li", { class: "muted" }, "None yet."),
      known.map((child) =>
        el(
          "li",
          { dataset: { jobId: child.id } },
          jobLink(child.id),
          " ",
          child.status
            ? statusBadge(child.status)
            : el("span", { class: childProblems.has(child.id) ? "message error" : "muted" }, childProblems.get(child.id) ?? "reading…"),
        ),
      ),
    );
  }

  function update(model) {
    if (!shown) return;
    const node = model.nodes.get(shown);
    if (!node) return;
    const progress = model.progressOf(shown);
    replaceChildren(title, shown, " ", el("span", { class: "muted" }, node.node_type), " ", statusBadge(node.status));
    replaceChildren(
      facts,
      field("Attempts", String(node.attempts ?? 0), "node-attempts"),
      field("Started", formatTime(node.started_at)),
      field("Finished", formatTime(node.finished_at)),
      field("Duration", formatDuration(seconds(node))),
      progress
        ? field("Items", `${progress.succeeded + progress.failed}/${progress.total}${progress.failed ? ` (${progress.failed} failed)` : ""}`, "node-items")
        : null,
    );
    wait.update(node);
    renderChildren(model, node);
    replaceChildren(
      error,
      node.error ? el("div", { class: "message error", id: "node-error-text" }, `${node.error.type}: ${node.error.message}`) : null,
    );
    const text = model.tokenText(shown);
    tokensBox.hidden = !text;
    if (tokens.textContent !== text) tokens.textContent = text;
    const key = `${node.status}:${node.attempts}:${node.rendered_config === undefined ? 0 : 1}`;
    if (key !== shownKey) {
      shownKey = key;
      replaceChildren(output, node.output === undefined || node.output === null ? el("p", { class: "muted" }, "None yet.") : jsonBlock(node.output));
      replaceChildren(
        config,
        node.rendered_config === undefined || node.rendered_config === null
          ? el("p", { class: "muted" }, "Shown once an attempt has ended.")
          : jsonBlock(node.rendered_config),
      );
      loadLogs(shown).catch((failure) => replaceChildren(logs, el("li", { class: "message error" }, failure.message)));
    }
  }

  return {
    element,
    update,
    get selected() {
      return shown;
    },
    select(nodeId, model) {
      shown = nodeId;
      shownKey = "";
      element.hidden = !nodeId;
      replaceChildren(logs);
      update(model);
    },
  };
}

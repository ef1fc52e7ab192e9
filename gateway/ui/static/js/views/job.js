// A job, live: its DAG with each node's state, map progress bars, a timeline of when each node ran, its
// status, what it waits for and its duration, the job it re-runs or is a child of, the selected node's
// details, and the events as they arrive. A running job's events are followed over SSE (from the first, so a reload misses nothing);
// each node that ends, and each reconnect, brings a fresh read of the job for the details events do not
// carry.

import { request, segment } from "../api.js";
import { drawDag } from "../dag.js";
import { el, formatDuration, formatTime, jobLink, jsonBlock, replaceChildren, shortId, statusBadge } from "../dom.js";
import { JobModel } from "../job-state.js";
import { followJob } from "../live.js";
import { nodePanel } from "./node-panel.js";
import { waitSummary } from "./wait-box.js";

const REFRESH_DELAY_MS = 200;
const TICK_MS = 250;
const REFRESHING_EVENTS = new Set(["node_completed", "node_failed", "node_retrying", "node_skipped", "job_completed", "job_failed", "job_cancelled"]);

const ENDED = new Set(["completed", "failed", "cancelled"]);

/**
 * What can be done to a job, shown as buttons while `available(job)` holds. `run` answers the job as it now
 * is, or `opens` a new job (a re-run), which the page then shows. An approval is decided in its node's
 * panel (wait-box.js), as it belongs to the node.
 */
const JOB_ACTIONS = [
  {
    id: "cancel",
    label: "Cancel job",
    available: (job) => job.status === "pending" || job.status === "running",
    run: (job) => request(`/api/v1/jobs/${segment(job.id)}/cancel`, { method: "POST" }),
  },
  {
    id: "rerun",
    label: "Re-run from checkpoints",
    available: (job) => ENDED.has(job.status),
    opens: true,
    run: (job) => request(`/api/v1/jobs/${segment(job.id)}/rerun`, { method: "POST", body: {} }),
  },
];

function timeline(model) {
  const started = model.job.started_at ? Date.parse(model.job.started_at) : null;
  const rows = [...model.nodes.values()].filter((node) => node.started_at && node.status !== "skipped");
  if (!started || !rows.length) return el("p", { class: "muted" }, "Nothing has run yet.");
  const end = model.job.finished_at ? Date.parse(model.job.finished_at) : Date.now();
  const span = Math.max(1, end - started);
  rows.sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
  return el(
    "div",
    { class: "timeline-rows" },
    rows.map((node) => {
      const from = Math.max(0, Date.parse(node.started_at) - started);
      const to = (node.finished_at ? Date.parse(node.finished_at) : end) - started;
      const bar = el("div", { class: `bar status-${node.status}`, title: `${node.node_id}: ${formatDuration((to - from) / 1000)}` });
      bar.style.left = `${((100 * from) / span).toFixed(2)}%`;
      bar.style.width = `${Math.max(0.4, (100 * (to - from)) / span).toFixed(2)}%`;
      return el("div", { class: "timeline-row", dataset: { nodeId: node.node_id } }, el("span", { class: "name" }, node.node_id), el("div", { class: "track" }, bar));
    }),
    el("div", { class: "timeline-scale muted" }, el("span", {}, "0 s"), el("span", {}, formatDuration(span / 1000))),
  );
}

function eventRow(event) {
  return el(
    "li",
    { dataset: { sequence: String(event.sequence), type: event.type, id: event.id ?? "" } },
    el("span", { class: "mono" }, `#${event.sequence}`),
    ` ${new Date(event.time).toLocaleTimeString()} ${event.type}`,
    event.node_id ? el("span", { class: "mono" }, ` ${event.node_id}`) : null,
  );
}

export async function show(root, [jobId], _query, context) {
  const job = await request(`/api/v1/jobs/${segment(jobId)}`);
  const workflow = await request(`/api/v1/workflows/${segment(job.workflow_id)}/versions/${job.workflow_version}`);
  const model = new JobModel(job, workflow.definition);

  const status = el("span", { id: "job-status" });
  const waiting = el("span", { id: "job-waiting" });
  const duration = el("span", { id: "job-duration" });
  const stream = el("span", { id: "stream-state", class: "muted", dataset: { state: "idle", connections: "0" } });
  const actions = el("div", { class: "actions", id: "job-actions" });
  const actionMessage = el("p", { class: "message", id: "action-message" });
  const problem = el("div", { id: "job-error" });
  const result = el("div", { id: "job-result" });
  const dagBox = el("div", { class: "dag-box", id: "dag" });
  const timelineBox = el("div", { class: "timeline", id: "timeline" });
  const eventCount = el("span", { id: "event-count" }, "0");
  const eventList = el("ol", { class: "events", id: "events" });
  let stop = null;
  let refreshTimer = null;
  let frame = 0;
  let waitsShown = "";

  const panel = nodePanel(jobId, () => selectNode(null));

  function selectNode(nodeId) {
    dag.select(nodeId);
    panel.select(nodeId, model);
  }

  /** "· waiting for approval: <message>", each wait a link to its node; redrawn only when the waits change. */
  function renderWaits() {
    const waits = model.waits();
    const key = waits.map((wait) => `${wait.node_id}:${Date.parse(wait.since)}`).join(" ");
    if (key === waitsShown) return;
    waitsShown = key;
    replaceChildren(
      waiting,
      waits.map((wait, index) => [
        index ? "; " : "· ",
        el("button", { type: "button", class: "link", onclick: () => selectNode(wait.node_id) }, waitSummary(wait)),
      ]),
    );
  }

  function renderActions() {
    const buttons = JOB_ACTIONS.filter((action) => action.available(model.job)).map((action) =>
      el(
        "button",
        {
          type: "button",
          id: `action-${action.id}`,
          onclick: async (event) => {
            event.currentTarget.disabled = true;
            try {
              const answer = await action.run(model.job);
              if (action.opens) {
                context.navigate(`#/jobs/${encodeURIComponent(answer.id)}`);
                return;
              }
              model.merge(answer);
              replaceChildren(actionMessage, "");
            } catch (error) {
              replaceChildren(actionMessage, error.message);
              actionMessage.className = "message error";
            }
            schedule();
          },
        },
        action.label,
      ),
    );
    replaceChildren(actions, buttons);
  }

  function render() {
    frame = 0;
    replaceChildren(status, statusBadge(model.job.status));
    renderWaits();
    replaceChildren(duration, formatDuration(model.duration()));
    for (const node of model.nodes.values()) {
      dag.setState(node.node_id, node.status);
      dag.setProgress(node.node_id, model.progressOf(node.node_id));
    }
    replaceChildren(timelineBox, timeline(model));
    replaceChildren(problem, model.job.error ? el("div", { class: "message error" }, `${model.job.error.type}: ${model.job.error.message}`) : null);
    replaceChildren(
      result,
      model.job.status === "completed" ? el("details", { open: true }, el("summary", {}, "Result"), jsonBlock(model.job.result)) : null,
    );
    eventCount.textContent = String(model.events.length);
    eventCount.dataset.repeated = String(model.repeated);
    while (eventList.children.length < model.events.length) eventList.append(eventRow(model.events[eventList.children.length]));
    renderActions();
    panel.update(model);
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(render);
  }

  async function refresh() {
    refreshTimer = null;
    try {
      model.merge(await request(`/api/v1/jobs/${segment(jobId)}`));
      schedule();
      if (model.finished && stop) {
        stop();
        stop = null;
        stream.dataset.state = "ended";
        replaceChildren(stream, "job ended");
      }
    } catch (error) {
      context.showError(root, error);
    }
  }

  function refreshSoon() {
    if (!refreshTimer) refreshTimer = setTimeout(refresh, REFRESH_DELAY_MS);
  }

  replaceChildren(
    root,
    el(
      "div",
      { class: "title-row" },
      el("h1", {}, "Job ", el("span", { class: "mono" }, shortId(job.id))),
      status,
      waiting,
      el("span", {}, "Duration ", duration),
      stream,
    ),
    el(
      "p",
      { class: "muted" },
      "Workflow ",
      el("a", { href: `#/workflows/${encodeURIComponent(job.workflow_id)}`, id: "job-workflow" }, workflow.name),
      ` v${job.workflow_version} · created ${formatTime(job.created_at)} · id `,
      el("span", { class: "mono" }, job.id),
      job.rerun_of
        ? [" · re-run of ", jobLink(job.rerun_of, { id: "job-rerun-of" })]
        : null,
      job.parent_job_id
        ? [
            " · child of job ",
            jobLink(job.parent_job_id, { id: "job-parent" }),
            " (node ",
            el("span", { class: "mono", id: "job-parent-node" }, job.parent_node_id),
            ")",
          ]
        : null,
    ),
    actions,
    actionMessage,
    problem,
    el("div", { class: "job-body" }, el("section", { class: "panel graph" }, el("h2", {}, "Graph"), dagBox), panel.element),
    el("section", { class: "panel" }, el("h2", {}, "Timeline"), timelineBox),
    result,
    el("details", { class: "panel", id: "events-box" }, el("summary", {}, "Events (", eventCount, ")"), eventList),
  );
  const dag = drawDag(dagBox, workflow.definition, { onSelect: (nodeId) => panel.select(nodeId, model) });

  if (!model.finished) {
    stop = followJob(jobId, {
      onEvent(event) {
        if (!model.apply(event)) return;
        if (REFRESHING_EVENTS.has(event.type)) refreshSoon();
        schedule();
      },
      onState({ state, connections }) {
        stream.dataset.state = state;
        stream.dataset.connections = String(connections);
        const reconnects = Math.max(0, connections - 1);
        replaceChildren(stream, `stream ${state}${reconnects ? ` · ${reconnects} reconnect${reconnects > 1 ? "s" : ""}` : ""}`);
        if (state === "live" && connections > 1) refreshSoon();
      },
    });
  } else {
    stream.dataset.state = "ended";
    replaceChildren(stream, "job ended");
  }
  const ticker = setInterval(() => {
    if (!model.finished) schedule();
  }, TICK_MS);
  render();

  return () => {
    if (stop) stop();
    clearInterval(ticker);
    clearTimeout(refreshTimer);
    if (frame) cancelAnimationFrame(frame);
  };
}

// What a waiting node waits for, in its panel: the kind of wait, the approver's message or the child job
// (a link to its page), since when and until when. An approval gets Approve and Reject buttons and an optional comment, sent as the
// wait's signal (an approval node's id; an agent's approval tool's `agent.<turn>.<call>`); the job's events then show the node completing (or the service's refusal shows
// here, and the decision can be sent again).

import { sendSignal } from "../api.js";
import { el, field, formatTime, jobLink, replaceChildren, shortId } from "../dom.js";
import { childJobOf } from "../job-state.js";

/** The wait in a few words, as the job's header says it. */
export function waitSummary(wait) {
  if (wait.kind === "approval") return `waiting for approval: ${wait.message ?? wait.node_id}`;
  if (wait.kind === "timer") return `waiting until ${formatTime(wait.deadline)}`;
  if (wait.kind === "child") return `waiting for child job ${shortId(childJobOf(wait))}`;
  return `waiting for signal ${wait.signal}`;
}

function decisionForm(jobId, signal) {
  const comment = el("textarea", { id: "approval-comment", rows: 3, placeholder: "Why (optional)" });
  const status = el("p", { class: "message", id: "approval-status", role: "status" });
  const approve = el("button", { type: "button", id: "approve", onclick: () => decide(true) }, "Approve");
  const reject = el("button", { type: "button", id: "reject", class: "reject", onclick: () => decide(false) }, "Reject");
  const controls = [comment, approve, reject];

  async function decide(approved) {
    for (const control of controls) control.disabled = true;
    status.className = "message";
    replaceChildren(status, "Sending…");
    const text = comment.value.trim();
    try {
      await sendSignal(jobId, signal, text ? { approved, comment: text } : { approved });
      status.className = "message ok";
      replaceChildren(status, `${approved ? "Approved" : "Rejected"}; the job goes on.`);
    } catch (error) {
      status.className = "message error";
      replaceChildren(status, error.message);
      for (const control of controls) control.disabled = false;
    }
  }

  return el(
    "div",
    { class: "decision" },
    el("label", { for: "approval-comment" }, "Comment"),
    comment,
    el("div", { class: "actions" }, approve, reject),
    status,
  );
}

/** The panel's wait section; `update(node)` shows the node's wait while it waits, and keeps the form (and
 * what is typed in it) while the wait stays the same. */
export function waitBox(jobId) {
  const facts = el("dl", { class: "facts", id: "wait-facts" });
  const decision = el("div", { id: "wait-decision" });
  const element = el("section", { class: "wait-box", id: "node-wait", hidden: true }, el("h3", {}, "Waiting for"), facts, decision);
  let shownKey = "";

  function update(node) {
    const wait = node.status === "waiting" ? node.wait : null;
    element.hidden = !wait;
    const key = wait ? `${node.node_id}:${wait.signal}:${Date.parse(wait.since)}` : "";
    if (key === shownKey) return;
    shownKey = key;
    if (!wait) {
      replaceChildren(facts);
      replaceChildren(decision);
      return;
    }
    const child = wait.kind === "child" ? childJobOf(wait) : null;
    replaceChildren(
      facts,
      field("Kind", wait.kind, "wait-kind"),
      wait.kind === "signal" ? field("Signal", wait.signal, "wait-signal") : null,
      child ? field("Child job", jobLink(child, {}, child), "wait-child") : null,
      wait.message ? field("Message", wait.message, "wait-message") : null,
      field("Since", formatTime(wait.since), "wait-since"),
      wait.deadline ? field("Deadline", formatTime(wait.deadline), "wait-deadline") : null,
    );
    replaceChildren(decision, wait.kind === "approval" ? decisionForm(jobId, wait.signal ?? node.node_id) : null);
  }

  return { element, update };
}

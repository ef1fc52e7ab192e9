// Small pieces the views share: paging, a JSON editor checked as you type, tables of jobs.

import { el, formatDuration, formatTime, replaceChildren, shortId, statusBadge } from "./dom.js";

/** "21–40 of 95" with previous and next buttons, `onPage(offset)` when one is pressed; none for one page. */
export function pager({ offset, limit, total }, onPage) {
  if (offset === 0 && total <= limit) return null;
  const first = total ? offset + 1 : 0;
  const last = Math.min(offset + limit, total);
  return el(
    "div",
    { class: "pager" },
    el("button", { type: "button", class: "previous", disabled: offset <= 0, onclick: () => onPage(Math.max(0, offset - limit)) }, "← Previous"),
    el("span", { class: "range" }, `${first}–${last} of ${total}`),
    el("button", { type: "button", class: "next", disabled: offset + limit >= total, onclick: () => onPage(offset + limit) }, "Next →"),
  );
}

/**
 * A textarea for JSON that says, as you type, whether its text is valid and of the wanted shape.
 * `check(value)` returns a problem (a string) or null. Returns {element, value(), valid()}.
 */
export function jsonEditor({ id, initial = "{}", rows = 6, check = () => null, onChange = () => {} }) {
  const area = el("textarea", { id, rows, spellcheck: "false", class: "code", "aria-describedby": `${id}-status` });
  area.value = initial;
  const status = el("p", { id: `${id}-status`, class: "message", role: "status" });
  let parsed;
  let problem = null;
  const validate = () => {
    try {
      parsed = JSON.parse(area.value);
      problem = check(parsed);
    } catch (error) {
      problem = `not valid JSON: ${error.message}`;
    }
    replaceChildren(status, problem ?? "valid JSON");
    status.className = problem ? "message error" : "message ok";
    area.setAttribute("aria-invalid", problem ? "true" : "false");
    onChange(!problem);
  };
  area.addEventListener("input", validate);
  queueMicrotask(validate);
  return {
    element: el("div", { class: "json-editor" }, area, status),
    value: () => parsed,
    valid: () => !problem,
  };
}

export function mustBeObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? null : "must be a JSON object {...}";
}

export function jobsTable(jobs, { showWorkflow = true } = {}) {
  if (!jobs.length) return el("p", { class: "muted empty" }, "No jobs yet.");
  return el(
    "table",
    { class: "list jobs-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "Job"), showWorkflow ? el("th", {}, "Workflow") : null, el("th", {}, "Status"), el("th", {}, "Created"), el("th", {}, "Duration"))),
    el(
      "tbody",
      {},
      jobs.map((job) =>
        el(
          "tr",
          { dataset: { jobId: job.id } },
          el("td", {}, el("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "mono" }, shortId(job.id))),
          showWorkflow
            ? el("td", {}, el("a", { href: `#/workflows/${encodeURIComponent(job.workflow_id)}`, class: "mono" }, `${shortId(job.workflow_id)} v${job.workflow_version}`))
            : null,
          el("td", {}, statusBadge(job.status)),
          el("td", {}, formatTime(job.created_at)),
          el("td", {}, formatDuration(job.duration_s)),
        ),
      ),
    ),
  );
}

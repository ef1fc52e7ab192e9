// The caller's jobs, newest first: filtered by status (any of several) and by workflow, in pages.

import { request } from "../api.js";
import { el, replaceChildren, shortId } from "../dom.js";
import { jobsTable, pager } from "../widgets.js";

const PAGE_SIZE = 25;
const JOB_STATUSES = ["pending", "running", "completed", "failed", "cancelled"];

function listHash({ statuses, workflowId, offset }) {
  const query = new URLSearchParams();
  for (const status of statuses) query.append("status", status);
  if (workflowId) query.set("workflow_id", workflowId);
  if (offset) query.set("offset", String(offset));
  const text = query.toString();
  return text ? `#/jobs?${text}` : "#/jobs";
}

export async function show(root, _params, query, context) {
  const statuses = query.getAll("status").filter((status) => JOB_STATUSES.includes(status));
  const workflowId = query.get("workflow_id") ?? "";
  const offset = Math.max(0, Number.parseInt(query.get("offset") ?? "0", 10) || 0);
  const page = await request("/api/v1/jobs", {
    query: { status: statuses, workflow_id: workflowId, offset, limit: PAGE_SIZE },
  });
  const filters = el(
    "fieldset",
    { class: "filters", id: "status-filter" },
    el("legend", {}, "Status"),
    JOB_STATUSES.map((status) => {
      const box = el("input", { type: "checkbox", value: status, id: `status-${status}`, checked: statuses.includes(status) });
      box.addEventListener("change", () => {
        const chosen = JOB_STATUSES.filter((item) => document.getElementById(`status-${item}`).checked);
        context.navigate(listHash({ statuses: chosen, workflowId, offset: 0 }));
      });
      return el("label", { class: `chip status-${status}`, for: `status-${status}` }, box, ` ${status}`);
    }),
  );
  replaceChildren(
    root,
    el("h1", {}, "Jobs"),
    el(
      "div",
      { class: "toolbar" },
      filters,
      workflowId
        ? el("p", {}, "Workflow ", el("a", { href: `#/workflows/${encodeURIComponent(workflowId)}`, class: "mono" }, shortId(workflowId)), " · ", el("a", { href: listHash({ statuses, offset: 0 }) }, "all workflows"))
        : null,
    ),
    jobsTable(page.items),
    pager(page, (next) => context.navigate(listHash({ statuses, workflowId, offset: next }))),
  );
}

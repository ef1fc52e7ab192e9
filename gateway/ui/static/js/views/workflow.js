// One workflow: its DAG (the latest version, or ?version=N), its versions, its recent jobs, and a Run
// form whose JSON input is checked before it is sent.

import { ApiError, request, segment } from "../api.js";
import { drawDag } from "../dag.js";
import { el, formatTime, replaceChildren } from "../dom.js";
import { jobsTable, jsonEditor, mustBeObject, pager } from "../widgets.js";

const RECENT_JOBS = 10;
const VERSIONS_PAGE = 10;

function versionsList(workflowId, page, shownVersion, onPage) {
  return el(
    "div",
    { id: "versions" },
    el(
      "ol",
      { class: "versions" },
      page.items.map((version) =>
        el(
          "li",
          { class: version.version === shownVersion ? "current" : null, dataset: { version: String(version.version) } },
          el("a", { href: `#/workflows/${encodeURIComponent(workflowId)}?version=${version.version}` }, `v${version.version}`),
          el("span", { class: "muted" }, ` ${formatTime(version.updated_at)} `),
          version.description,
        ),
      ),
    ),
    page.total > page.limit ? pager(page, onPage) : null,
  );
}

function runForm(workflow, context) {
  const problems = el("div", { id: "run-problems" });
  const submit = el("button", { type: "submit", id: "run" }, `Run v${workflow.version}`);
  const editor = jsonEditor({
    id: "run-input",
    rows: 8,
    check: mustBeObject,
    onChange: (valid) => {
      submit.disabled = !valid;
    },
  });
  return el(
    "form",
    {
      class: "panel",
      id: "run-form",
      onsubmit: async (event) => {
        event.preventDefault();
        if (!editor.valid()) return;
        submit.disabled = true;
        try {
          const job = await request(`/api/v1/workflows/${segment(workflow.id)}/execute`, { method: "POST", body: editor.value() });
          context.navigate(`#/jobs/${encodeURIComponent(job.id)}`);
        } catch (error) {
          if (!(error instanceof ApiError) || error.status === 401) {
            context.showError(document.getElementById("view"), error);
            return;
          }
          replaceChildren(problems, el("p", { class: "message error" }, error.message));
          submit.disabled = false;
        }
      },
    },
    el("h2", {}, "Run"),
    el("label", { for: "run-input" }, "Input (a JSON object, read by {{input...}} templates)"),
    editor.element,
    submit,
    problems,
  );
}

export async function show(root, [workflowId], query, context) {
  const wanted = Number.parseInt(query.get("version") ?? "", 10);
  const base = `/api/v1/workflows/${segment(workflowId)}`;
  const [latest, jobs] = await Promise.all([
    request(base),
    request("/api/v1/jobs", { query: { workflow_id: workflowId, limit: RECENT_JOBS } }),
  ]);
  const shown = wanted && wanted !== latest.version ? await request(`${base}/versions/${wanted}`) : latest;
  const versionsBox = el("div");
  const showVersions = async (offset) => {
    const page = await request(`${base}/versions`, { query: { offset, limit: VERSIONS_PAGE } });
    replaceChildren(versionsBox, versionsList(workflowId, page, shown.version, (next) => showVersions(next).catch((error) => context.showError(root, error))));
  };
  await showVersions(0);

  const dagBox = el("div", { class: "dag-box", id: "dag" });
  replaceChildren(
    root,
    el("div", { class: "title-row" }, el("h1", { id: "workflow-name" }, latest.name), el("span", { class: "muted mono" }, latest.id)),
    latest.description ? el("p", { class: "description" }, latest.description) : null,
    el(
      "p",
      { class: "muted" },
      shown.version === latest.version
        ? `Version ${latest.version}, updated ${formatTime(latest.updated_at)}, owner ${latest.owner}`
        : `Showing version ${shown.version} of ${latest.version}; runs use the latest.`,
    ),
    el("section", { class: "panel" }, el("h2", {}, "Graph"), dagBox),
    el(
      "div",
      { class: "columns" },
      runForm(latest, context),
      el("section", { class: "panel" }, el("h2", {}, "Versions"), versionsBox),
    ),
    el(
      "section",
      { class: "panel" },
      el("h2", {}, "Recent jobs"),
      jobsTable(jobs.items, { showWorkflow: false }),
      jobs.total > jobs.items.length ? el("a", { href: `#/jobs?workflow_id=${encodeURIComponent(workflowId)}` }, `All ${jobs.total} jobs`) : null,
    ),
  );
  drawDag(dagBox, shown.definition);
}

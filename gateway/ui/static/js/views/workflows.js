// The caller's workflows: a search by name and pages; and the form that creates one from its JSON
// definition (checked as typed, then by the service, whose every problem is listed).

import { ApiError, request } from "../api.js";
import { el, formatTime, replaceChildren } from "../dom.js";
import { jsonEditor, mustBeObject, pager } from "../widgets.js";

const PAGE_SIZE = 20;
const SEARCH_DELAY_MS = 300;
const EXAMPLE = {
  name: "Greeting",
  nodes: [
    { id: "start", type: "start" },
    { id: "greet", type: "transform", config: { template: { text: "Hello {{input.name}}" } } },
    { id: "end", type: "end" },
  ],
  edges: [
    { source: "start", target: "greet" },
    { source: "greet", target: "end" },
  ],
};

function listHash(name, offset) {
  const query = new URLSearchParams();
  if (name) query.set("name", name);
  if (offset) query.set("offset", String(offset));
  const text = query.toString();
  return text ? `#/workflows?${text}` : "#/workflows";
}

function table(workflows) {
  if (!workflows.length) return el("p", { class: "muted empty" }, "No workflows found.");
  return el(
    "table",
    { class: "list workflows-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Description"), el("th", {}, "Version"), el("th", {}, "Updated"))),
    el(
      "tbody",
      {},
      workflows.map((workflow) =>
        el(
          "tr",
          { dataset: { workflowId: workflow.id } },
          el("td", {}, el("a", { href: `#/workflows/${encodeURIComponent(workflow.id)}` }, workflow.name)),
          el("td", { class: "muted" }, workflow.description),
          el("td", {}, `v${workflow.version}`),
          el("td", {}, formatTime(workflow.updated_at)),
        ),
      ),
    ),
  );
}

async function showList(root, query, context) {
  const name = query.get("name") ?? "";
  const offset = Math.max(0, Number.parseInt(query.get("offset") ?? "0", 10) || 0);
  const page = await request("/api/v1/workflows", { query: { name, offset, limit: PAGE_SIZE } });
  const search = el("input", { type: "search", id: "workflow-search", placeholder: "Search by name", value: name, autocomplete: "off" });
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => context.navigate(listHash(search.value.trim(), 0)), SEARCH_DELAY_MS);
  });
  replaceChildren(
    root,
    el("div", { class: "title-row" }, el("h1", {}, "Workflows"), el("a", { class: "button", href: "#/workflows/new", id: "new-workflow" }, "New workflow")),
    el("div", { class: "toolbar" }, search),
    table(page.items),
    pager(page, (next) => context.navigate(listHash(name, next))),
  );
  if (name) {
    search.focus();
    search.setSelectionRange(name.length, name.length);
  }
  return () => clearTimeout(timer);
}

function showNew(root, context) {
  const problems = el("div", { id: "create-problems" });
  const submit = el("button", { type: "submit", id: "create-workflow" }, "Create workflow");
  const editor = jsonEditor({
    id: "definition",
    rows: 22,
    initial: JSON.stringify(EXAMPLE, null, 2),
    check: (value) => mustBeObject(value) ?? (Array.isArray(value.nodes) ? null : "needs a list of nodes"),
    onChange: (valid) => {
      submit.disabled = !valid;
    },
  });
  const form = el(
    "form",
    {
      class: "panel",
      id: "new-workflow-form",
      onsubmit: async (event) => {
        event.preventDefault();
        if (!editor.valid()) return;
        submit.disabled = true;
        try {
          const workflow = await request("/api/v1/workflows", { method: "POST", body: editor.value() });
          context.navigate(`#/workflows/${encodeURIComponent(workflow.id)}`);
        } catch (error) {
          if (!(error instanceof ApiError) || error.status === 401) {
            context.showError(root, error);
            return;
          }
          replaceChildren(
            problems,
            el("p", { class: "message error" }, error.message),
            el("ul", { class: "problems" }, error.problems.map((problem) => el("li", {}, context.problemText(problem)))),
          );
          submit.disabled = false;
        }
      },
    },
    el("label", { for: "definition" }, "Definition (JSON: name, description, nodes, edges)"),
    editor.element,
    submit,
    problems,
  );
  replaceChildren(root, el("h1", {}, "New workflow"), form);
}

export async function show(root, _params, query, context) {
  if (context.mode === "new") return showNew(root, context);
  return showList(root, query, context);
}

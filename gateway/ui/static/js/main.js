// The page: a header, a navigation and one view at a time, chosen by the URL's fragment
// (#/workflows, #/workflows/<id>, #/jobs, #/jobs/<id>, #/signin). Ids never reach the server's path
// log as page URLs, and a reload shows the same view.

import { ApiError, claims, isSignedIn, signOut } from "./api.js";
import { el, replaceChildren } from "./dom.js";
import * as jobView from "./views/job.js";
import * as jobsView from "./views/jobs.js";
import * as signinView from "./views/signin.js";
import * as workflowView from "./views/workflow.js";
import * as workflowsView from "./views/workflows.js";

/** The navigation; an approvals inbox slots in here once approvals exist. */
const NAVIGATION = [
  { href: "#/workflows", label: "Workflows", section: "workflows" },
  { href: "#/jobs", label: "Jobs", section: "jobs" },
];

const ROUTES = [
  { pattern: /^signin$/, view: signinView, section: null, open: true },
  { pattern: /^workflows$/, view: workflowsView, section: "workflows" },
  { pattern: /^workflows\/new$/, view: workflowsView, section: "workflows", mode: "new" },
  { pattern: /^workflows\/([^/]+)$/, view: workflowView, section: "workflows" },
  { pattern: /^jobs$/, view: jobsView, section: "jobs" },
  { pattern: /^jobs\/([^/]+)$/, view: jobView, section: "jobs" },
];

const view = document.getElementById("view");
let cleanup = null;
let shown = 0;
let afterSignIn = "#/workflows";

function parse(hash) {
  const [path, search = ""] = hash.replace(/^#\/?/, "").split("?");
  for (const route of ROUTES) {
    const match = route.pattern.exec(path || "workflows");
    if (match) {
      const params = match.slice(1).map((part) => decodeURIComponent(part));
      return { ...route, params, query: new URLSearchParams(search) };
    }
  }
  return null;
}

export function navigate(hash) {
  if (window.location.hash === hash) show();
  else window.location.hash = hash;
}

/** What a view shows when its request failed: a refused token sends the user to sign in again. */
export function showError(root, error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut();
    afterSignIn = window.location.hash || afterSignIn;
    signinView.remember(`Please sign in again: ${error.message}`);
    navigate("#/signin");
    return;
  }
  if (error instanceof ApiError && error.status === 404) {
    replaceChildren(root, el("section", { class: "panel not-found" }, el("h1", {}, "Not found"), el("p", {}, error.message)));
    return;
  }
  const problems = error instanceof ApiError ? error.problems : [];
  replaceChildren(
    root,
    el(
      "section",
      { class: "panel error" },
      el("h1", {}, "Something went wrong"),
      el("p", {}, error.message),
      problems.length ? el("ul", {}, problems.map((problem) => el("li", {}, problemText(problem)))) : null,
    ),
  );
}

export function problemText(problem) {
  const where = [problem.node_id, problem.field].filter(Boolean).join(".");
  return where ? `${where}: ${problem.message}` : problem.message;
}

function header(section) {
  const nav = document.getElementById("nav");
  replaceChildren(
    nav,
    isSignedIn()
      ? NAVIGATION.map((item) => el("a", { href: item.href, class: item.section === section ? "current" : null }, item.label))
      : null,
  );
  const who = document.getElementById("who");
  if (!isSignedIn()) {
    replaceChildren(who);
    return;
  }
  const payload = claims() ?? {};
  const expires = typeof payload.exp === "number" ? ` · until ${new Date(payload.exp * 1000).toLocaleTimeString()}` : "";
  replaceChildren(
    who,
    el("span", { class: "subject", id: "signed-in-as" }, String(payload.sub ?? "?")),
    el("span", { class: "muted" }, expires),
    el("button", { type: "button", class: "link", id: "sign-out", onclick: () => { signOut(); navigate("#/signin"); } }, "Sign out"),
  );
}

async function show() {
  if (cleanup) cleanup();
  cleanup = null;
  const generation = ++shown;
  const route = parse(window.location.hash);
  if (!route) {
    header(null);
    replaceChildren(view, el("section", { class: "panel not-found" }, el("h1", {}, "Not found"), el("p", {}, "No such page.")));
    return;
  }
  if (!route.open && !isSignedIn()) {
    afterSignIn = window.location.hash || afterSignIn;
    navigate("#/signin");
    return;
  }
  header(route.section);
  const root = el("div", { class: "view" });
  view.replaceChildren(root);
  const context = { navigate, showError, problemText, mode: route.mode, afterSignIn: () => afterSignIn };
  try {
    const stop = await route.view.show(root, route.params, route.query, context);
    if (generation === shown) cleanup = stop ?? null;
    else if (stop) stop();
  } catch (error) {
    if (generation === shown) showError(root, error);
  }
}

window.addEventListener("hashchange", show);
show();

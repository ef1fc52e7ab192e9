// Sign in: paste a token (checked against the API before it is kept), or, in the service's embedded
// development mode, get a development token for a name typed in.

import { ApiError, request, signIn, signOut } from "../api.js";
import { el, replaceChildren } from "../dom.js";

let notice = "";

/** A message to show on the next sign-in page (why the user was sent here). */
export function remember(message) {
  notice = message;
}

async function accept(token, context, status) {
  signIn(token);
  try {
    await request("/api/v1/workflows", { query: { limit: 1 } });
  } catch (error) {
    signOut();
    replaceChildren(status, `Not signed in: ${error.message}`);
    status.className = "message error";
    return;
  }
  const next = context.afterSignIn();
  context.navigate(next.startsWith("#/signin") ? "#/workflows" : next);
}

export async function show(root, _params, _query, context) {
  const status = el("p", { class: notice ? "message error" : "message", id: "signin-status", role: "status" }, notice);
  notice = "";

  const tokenField = el("textarea", { id: "token", rows: 3, spellcheck: "false", autocomplete: "off", placeholder: "eyJhbGciOi…" });
  const pasteForm = el(
    "form",
    {
      class: "panel",
      id: "token-form",
      onsubmit: (event) => {
        event.preventDefault();
        const value = tokenField.value.trim();
        if (value) accept(value, context, status);
      },
    },
    el("h2", {}, "Sign in with a token"),
    el("p", { class: "muted" }, "A bearer token from the platform. It is kept in this browser tab only, until you sign out or close it."),
    el("label", { for: "token" }, "Token"),
    tokenField,
    el("button", { type: "submit", id: "token-submit" }, "Sign in"),
  );

  const nameField = el("input", { id: "dev-name", type: "text", autocomplete: "off", placeholder: "alice", maxlength: 128 });
  const devStatus = el("p", { class: "muted", id: "dev-status" }, "Only a service in the embedded development mode offers these tokens.");
  const devButton = el("button", { type: "submit", id: "dev-submit" }, "Get a development token");
  const devForm = el(
    "form",
    {
      class: "panel",
      id: "dev-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const sub = nameField.value.trim();
        if (!sub) return;
        try {
          const answer = await request("/api/v1/dev/token", { method: "POST", body: { sub }, anonymous: true });
          await accept(answer.token, context, status);
        } catch (error) {
          const offered = !(error instanceof ApiError && error.status === 404);
          replaceChildren(devStatus, offered ? error.message : "This service does not offer development tokens (it is not in the embedded development mode).");
          devStatus.className = "message error";
          devButton.disabled = !offered;
        }
      },
    },
    el("h2", {}, "Development sign-in"),
    el("label", { for: "dev-name" }, "User name"),
    nameField,
    devButton,
    devStatus,
  );

  replaceChildren(root, el("h1", {}, "Sign in"), status, el("div", { class: "columns" }, pasteForm, devForm));
  tokenField.focus();
}

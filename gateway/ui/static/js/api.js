// The service's API, from the page's own origin. The token lives in this tab's sessionStorage and is
// sent only in the Authorization header, or as ?token= to the one endpoint EventSource must reach.

const TOKEN_KEY = "workflow-service.token";

export class ApiError extends Error {
  constructor(status, detail, problems = []) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.problems = problems;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signIn(value) {
  sessionStorage.setItem(TOKEN_KEY, value.trim());
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The token's claims as its payload says (unverified: for showing who is signed in, nothing more). */
export function claims(value = token()) {
  try {
    const payload = value.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const bytes = Uint8Array.from(atob(payload), (char) => char.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

export function isSignedIn() {
  const current = token();
  const payload = current && claims(current);
  return Boolean(payload && (typeof payload.exp !== "number" || payload.exp * 1000 > Date.now()));
}

function url(path, query = {}) {
  const target = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) target.searchParams.append(key, String(item));
  }
  return target;
}

/** One request; resolves to the JSON answer (null for 204), rejects with an ApiError. */
export async function request(path, { method = "GET", query, body, anonymous = false } = {}) {
  const headers = { Accept: "application/json" };
  const current = token();
  if (current && !anonymous) headers.Authorization = `Bearer ${current}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (error) {
    throw new ApiError(0, `the service could not be reached (${error.message})`);
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText, data?.errors ?? []);
  return data;
}

export function segment(id) {
  return encodeURIComponent(String(id));
}

/** Send a job the signal `name` with `payload` (an approval's signal is its node id, its payload
 * `{approved, comment?}`); resolves to the stored signal once the service has it. */
export function sendSignal(jobId, name, payload) {
  return request(`/api/v1/jobs/${segment(jobId)}/signals/${segment(name)}`, { method: "POST", body: payload });
}

/** The URL of a job's Server-Sent Events, with the token as the query parameter EventSource needs. */
export function eventsUrl(jobId) {
  return url(`/api/v1/jobs/${segment(jobId)}/events`, { token: token() }).toString();
}

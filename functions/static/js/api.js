// The one way the page talks to OrgGuard's API: the caller's own credentials, problem+json errors.

const TOKEN = "orgguard-token";

/** "token" locally (the admin token typed once), "easyauth" behind App Service Authentication. */
export const authMode =
  document.querySelector('meta[name="orgguard-auth"]')?.content === "easyauth" ? "easyauth" : "token";

export const LOGIN = "/.auth/login/aad?post_login_redirect_uri=/";
export const LOGOUT = "/.auth/logout?post_logout_redirect_uri=/";

export function token() {
  return sessionStorage.getItem(TOKEN) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN, value);
  else sessionStorage.removeItem(TOKEN);
}

/** A refused or failed request, with the API's problem+json fields. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `The API answered ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** ``body`` goes as JSON; ``yaml`` as it is (a policy). */
export async function api(path, { method = "GET", body, yaml, signal } = {}) {
  // X-Requested-With asks App Service Authentication for a 401 rather than a login redirect.
  const headers = { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" };
  if (authMode === "token" && token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (yaml !== undefined) headers["Content-Type"] = "application/yaml";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: yaml !== undefined ? yaml : body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: "same-origin",
      // The API never redirects; the platform does when a session has ended (to a sign-in page elsewhere,
      // which a script may not follow). Seen, not followed, it means: sign in again.
      redirect: "manual",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, {
      title: "No answer",
      detail: "OrgGuard did not answer; check your connection and try again.",
    });
  }
  if (res.type === "opaqueredirect") {
    throw new ApiError(401, { title: "Signed out", detail: "Your session has ended; sign in again." });
  }
  const text = await res.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    doc = null;
  }
  if (!res.ok) {
    const problem =
      doc && typeof doc === "object" ? doc : { title: res.statusText, detail: `The API answered ${res.status}` };
    throw new ApiError(res.status, problem);
  }
  return doc;
}

/** A query string from the non-empty values of ``params``. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

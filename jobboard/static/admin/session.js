// The console's session: signing in and out, and every call to the API. The one place
// that knows how the console authenticates; the rest of the console only calls `call`.
//
// Today: bearer tokens from POST /api/login/, kept in sessionStorage (the same keys as the
// /dashboard/ page, so one sign-in serves both in a tab), an expired access token renewed
// once with the refresh token. Moving to cookie sessions means changing this module only
// (jobboard/static/js/api.js speaks that protocol), keeping its exports.

const TOKENS_KEY = "jobboard.tokens";
const EMAIL_KEY = "jobboard.email";

/** An answer outside 2xx/304, with the API's own error body (`message`, `errors`). */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function tokens() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS_KEY));
  } catch {
    return null;
  }
}

async function send(method, path, { token, json, headers = {} } = {}) {
  const sent = { Accept: "application/json", ...headers };
  if (token) sent.Authorization = `Bearer ${token}`;
  if (json !== undefined) sent["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers: sent,
    cache: "no-store",
    body: json === undefined ? undefined : JSON.stringify(json),
  });
  let body = null;
  if (response.status !== 304) {
    const text = await response.text();
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = { message: `HTTP ${response.status} ${response.statusText}` };
    }
  }
  if (!response.ok && response.status !== 304) throw new ApiError(response.status, body);
  return { status: response.status, body, headers: response.headers };
}

let renewal = null;

// A refresh token works once (the API revokes the whole login when one comes back), so
// calls that fail together share one renewal.
function renew(used) {
  const current = tokens();
  if (current && current.access_token !== used.access_token) return Promise.resolve(current);
  if (!renewal) {
    renewal = send("POST", "/api/token/refresh/", { token: used.refresh_token })
      .then(({ body }) => {
        sessionStorage.setItem(TOKENS_KEY, JSON.stringify(body));
        return body;
      })
      .finally(() => {
        renewal = null;
      });
  }
  return renewal;
}

/** The signed-in email, or null when nobody is signed in in this tab. */
export function signedInAs() {
  return tokens() ? sessionStorage.getItem(EMAIL_KEY) || "" : null;
}

export async function signIn(email, password) {
  const { body } = await send("POST", "/api/login/", { json: { email, password } });
  sessionStorage.setItem(TOKENS_KEY, JSON.stringify(body));
  sessionStorage.setItem(EMAIL_KEY, email);
}

export async function signOut() {
  const held = tokens();
  sessionStorage.removeItem(TOKENS_KEY);
  sessionStorage.removeItem(EMAIL_KEY);
  if (held) await send("POST", "/api/logout/", { token: held.access_token }).catch(() => {});
}

/**
 * Call the API as the signed-in user. Resolves to `{status, body, headers}` for 2xx and
 * 304; rejects with an ApiError otherwise. A 401 that a renewal cannot cure signs out and
 * tells the page (`jobboard:signed-out` on document).
 */
export async function call(method, path, options = {}) {
  const held = tokens();
  try {
    if (!held) throw new ApiError(401, { message: "Please sign in." });
    try {
      return await send(method, path, { ...options, token: held.access_token });
    } catch (error) {
      if (error.status !== 401 || !held.refresh_token) throw error;
      const renewed = await renew(held);
      return await send(method, path, { ...options, token: renewed.access_token });
    }
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem(TOKENS_KEY);
      document.dispatchEvent(new CustomEvent("jobboard:signed-out"));
    }
    throw error;
  }
}

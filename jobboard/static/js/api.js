// The browser's door to jobboard's JSON API, shared by every page (the web app, the
// operations console). An ES module: no build step, no library, no network beyond this
// app's own origin.
//
// Signing in sets HttpOnly cookies that page script cannot read (flask-jwt-extended's
// cookie mode); every change carries the double-submit CSRF token from the readable
// `csrf_access_token` cookie in `X-CSRF-TOKEN`. An expired access cookie is renewed once
// through POST /api/session/refresh/ and the call retried: calls that fail together, in
// this tab or in others (Web Locks), share one renewal, because the API revokes a whole
// login when a refresh token comes back a second time.

const CSRF_COOKIE = "csrf_access_token";
const CSRF_REFRESH_COOKIE = "csrf_refresh_token";
const CSRF_HEADER = "X-CSRF-TOKEN";
const REFRESH_PATH = "/api/session/refresh/";
const CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** An answer outside 2xx/304, with the API's own error body (`message`, `errors`). */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }

  /** The messages about one input field (`errors.json.<field>` etc.), or []. */
  fieldErrors(field) {
    const errors = this.body.errors || {};
    for (const location of Object.values(errors)) {
      if (location && typeof location === "object" && field in location) {
        const messages = location[field];
        return Array.isArray(messages) ? messages.map(String) : [JSON.stringify(messages)];
      }
    }
    return [];
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

async function send(method, path, { json, headers = {}, csrfCookie = CSRF_COOKIE } = {}) {
  const sent = { Accept: "application/json", ...headers };
  if (json !== undefined) sent["Content-Type"] = "application/json";
  if (CHANGING.has(method)) {
    const token = cookie(csrfCookie);
    if (token) sent[CSRF_HEADER] = token;
  }
  return fetch(path, {
    method,
    headers: sent,
    credentials: "same-origin",
    cache: "no-store",
    body: json === undefined ? undefined : JSON.stringify(json),
  });
}

async function bodyOf(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { message: `HTTP ${response.status} ${response.statusText}` };
  }
}

let renewal = null;

/** Renew the access cookie with the refresh cookie; true when it worked. One renewal at
 * a time for every tab of this origin. */
function renewSession() {
  if (!renewal) {
    const attempt = async () => {
      const response = await send("POST", REFRESH_PATH, { csrfCookie: CSRF_REFRESH_COOKIE });
      return response.ok;
    };
    const locked = navigator.locks
      ? navigator.locks.request("jobboard-session-refresh", attempt)
      : attempt();
    renewal = locked.finally(() => {
      renewal = null;
    });
  }
  return renewal;
}

/**
 * Call the API. Resolves to `{status, body, headers}` for 2xx and 304; rejects with an
 * ApiError otherwise (after one session renewal on 401).
 */
export async function api(method, path, options = {}) {
  let response = await send(method, path, options);
  if (response.status === 401 && path !== REFRESH_PATH && (await renewSession())) {
    response = await send(method, path, options);
  }
  const body = response.status === 304 ? null : await bodyOf(response);
  if (!response.ok && response.status !== 304) {
    const error = new ApiError(response.status, body);
    if (response.status === 401) document.dispatchEvent(new CustomEvent("jobboard:signed-out"));
    throw error;
  }
  return { status: response.status, body, headers: response.headers };
}

/**
 * Keep `path` fresh: call `render(body, headers)` now and whenever the answer changes,
 * asking every `everyMs` (at most 5 s apart) with If-None-Match, so an unchanged
 * answer costs a 304 and no rendering. Stops asking while the tab is hidden and asks at
 * once when it is shown again. Returns `{refresh(), stop()}`.
 */
export function watch(path, render, { everyMs = 4000, onError = () => {} } = {}) {
  let etag = null;
  let timer = null;
  let stopped = false;
  let inFlight = null;
  let askAgain = false;

  async function askOnce() {
    try {
      const headers = etag ? { "If-None-Match": etag } : {};
      const answer = await api("GET", typeof path === "function" ? path() : path, {
        headers,
      });
      if (answer.status !== 304) {
        etag = answer.headers.get("ETag");
        render(answer.body, answer.headers);
      }
    } catch (error) {
      onError(error);
    }
  }

  // A poll asked for while one is on its way (a refresh after the page's own change,
  // say) runs again once that one is back: the answer in flight may predate the change.
  async function poll() {
    if (inFlight) {
      askAgain = true;
      return inFlight;
    }
    inFlight = (async () => {
      try {
        do {
          askAgain = false;
          await askOnce();
        } while (askAgain && !stopped);
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  }

  function schedule() {
    clearTimeout(timer);
    if (stopped || document.hidden) return;
    timer = setTimeout(async () => {
      await poll();
      schedule();
    }, Math.min(everyMs, 5000));
  }

  function visibility() {
    if (document.hidden) {
      clearTimeout(timer);
    } else {
      poll().then(schedule);
    }
  }

  document.addEventListener("visibilitychange", visibility);
  poll().then(schedule);
  return {
    /** Ask now (after a change the page made itself); forgets the ETag of a new path. */
    async refresh({ reset = false } = {}) {
      if (reset) etag = null;
      await poll();
      schedule();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", visibility);
    },
  };
}

/** A timestamp from the API as the person's own local date and time. */
export function localTime(iso, options = { dateStyle: "medium", timeStyle: "short" }) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
}

// The console's session: signing in and out, and every call to the API. The one place
// that knows how the console authenticates; the rest of the console only calls `call`.
//
// The console shares the web app's cookie session and its module, jobboard/static/js/api.js:
// POST /api/session/ sets the tokens in HttpOnly cookies that no script on this page can
// read, every change carries the double-submit CSRF token, and an expired access cookie is
// renewed once through POST /api/session/refresh/. Signing in here or on the web app's
// /signin/ page signs in both; signing out of either signs out of both. What the page can
// know is whether session cookies are there (their readable CSRF companions) and, from
// the API, the signed-in email, which it shows wherever the page marks
// `data-session-email`.

import { api, ApiError } from "../js/api.js";

export { ApiError };

const CSRF_COOKIES = ["csrf_access_token", "csrf_refresh_token"];

let email = null; // the signed-in email, once the API said it
let ended = false; // the API refused the session: signed out until the next sign-in

function hasSessionCookies() {
  return document.cookie
    .split(";")
    .some((part) => CSRF_COOKIES.includes(part.trim().split("=")[0]));
}

function known(profile) {
  email = profile ? profile.email : null;
  ended = !profile;
  for (const node of document.querySelectorAll("[data-session-email]")) {
    node.textContent = email || "";
  }
}

document.addEventListener("jobboard:signed-out", () => known(null));

// A session begun elsewhere (the web app, another tab): ask the API whose it is.
if (hasSessionCookies()) {
  api("GET", "/api/me/")
    .then(({ body }) => known(body))
    .catch(() => {}); // a refused session already told the page (`jobboard:signed-out`)
}

/** The signed-in email ("" until the API has said it), or null when nobody is signed in. */
export function signedInAs() {
  if (ended || !hasSessionCookies()) return null;
  return email || "";
}

export async function signIn(address, password) {
  const { body } = await api("POST", "/api/session/", { json: { email: address, password } });
  known(body);
}

export async function signOut() {
  try {
    await api("DELETE", "/api/session/");
  } catch {
    // Signed out already (an expired or revoked session): the cookies go either way.
  }
  known(null);
}

/**
 * Call the API as the signed-in user. Resolves to `{status, body, headers}` for 2xx and
 * 304; rejects with an ApiError otherwise. A 401 that a renewal cannot cure tells the page
 * (`jobboard:signed-out` on document).
 */
export function call(method, path, options = {}) {
  return api(method, path, options);
}

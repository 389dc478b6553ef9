// What every page of the web app shares: the header (who is signed in, sign out, the
// unread count), building elements without HTML strings, showing the API's own error
// messages beside the field or action that caused them, lists with filters and pages,
// and a confirmation dialog. Every rule stays in the API: this only shows its answers.

import { api, ApiError, localTime, watch } from "/static/js/api.js";

export { api, ApiError, localTime, watch };

export const $ = (id) => document.getElementById(id);

/** An element with attributes (`on*` functions become listeners) and children (strings
 * become text nodes: nothing is ever parsed as HTML). */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function setState(state) {
  document.body.dataset.state = state;
}

export function statusBadge(status) {
  return el("span", { class: `status status-${status}` }, String(status).replace("_", " "));
}

export function when(iso) {
  return iso ? el("time", { datetime: iso }, localTime(iso)) : "—";
}

export function dueDate(isoDate) {
  if (!isoDate) return "—";
  // A date, not an instant: shown as the calendar day it names.
  const [year, month, day] = isoDate.split("-").map(Number);
  return el(
    "time",
    { datetime: isoDate },
    new Intl.DateTimeFormat(undefined, { dateStyle: "medium" }).format(
      new Date(year, month - 1, day),
    ),
  );
}

export function personName(profile) {
  return (profile && profile.display_name) || `Member ${profile ? profile.id : "?"}`;
}

export function ratingText(rating) {
  if (!rating || !rating.count) return "no reviews yet";
  return `${rating.average.toFixed(2)} / 5 from ${rating.count} review${rating.count === 1 ? "" : "s"}`;
}

// --- errors beside what caused them --------------------------------------------------------

export function clearErrors(prefix) {
  for (const node of document.querySelectorAll(`[id^="${prefix}-"].field-error`)) {
    node.textContent = "";
  }
  for (const node of document.querySelectorAll(`[id^="${prefix}-"][aria-invalid]`)) {
    node.removeAttribute("aria-invalid");
  }
  const formError = $(`${prefix}-form-error`);
  if (formError) formError.textContent = "";
}

function messagesOf(value) {
  if (Array.isArray(value)) return value.map((item) => messagesOf(item)).join(" ");
  if (value && typeof value === "object") {
    return Object.entries(value)
      .map(([key, item]) => `${key}: ${messagesOf(item)}`)
      .join(" ");
  }
  return String(value);
}

/** Show an API error: each field's messages under the field `<prefix>-<field>` (params
 * under `<prefix>-params-<name>`), the rest in `<prefix>-form-error`. */
export function showError(prefix, error) {
  clearErrors(prefix);
  const fallback = $(`${prefix}-form-error`) || $("page-error");
  if (!(error instanceof ApiError)) {
    fallback.textContent = `Something went wrong: ${error.message || error}`;
    fallback.hidden = false;
    return;
  }
  let placed = false;
  const locations = (error.body && error.body.errors) || {};
  for (const fields of Object.values(locations)) {
    if (!fields || typeof fields !== "object" || Array.isArray(fields)) continue;
    for (const [field, messages] of Object.entries(fields)) {
      if (field === "params" && messages && typeof messages === "object" && !Array.isArray(messages)) {
        for (const [name, inner] of Object.entries(messages)) {
          placed = placeFieldError(`${prefix}-params-${name}`, inner) || placed;
        }
        if (!placed) placed = placeFieldError(`${prefix}-params`, messages);
        continue;
      }
      placed = placeFieldError(`${prefix}-${field}`, messages) || placed;
    }
  }
  if (!placed || error.status !== 422) {
    fallback.textContent = error.message;
    fallback.hidden = false;
  }
}

function placeFieldError(fieldId, messages) {
  const slot = $(`${fieldId}-error`);
  if (!slot) return false;
  slot.textContent = messagesOf(messages);
  const field = $(fieldId);
  if (field) field.setAttribute("aria-invalid", "true");
  return true;
}

/** Run `action` for a button, with the button disabled meanwhile; errors go to
 * `<prefix>-form-error` (or the page's error line). */
export async function busy(button, action) {
  button.disabled = true;
  try {
    return await action();
  } finally {
    button.disabled = false;
  }
}

// --- the signed-in person and the header ------------------------------------------------

let me = null;

/** The signed-in profile, or null (the API renews an expired session by itself). */
export async function currentUser() {
  if (!me) {
    me = api("GET", "/api/me/")
      .then((answer) => answer.body)
      .catch((error) => {
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          return null;
        }
        throw error;
      });
  }
  return me;
}

export function goToSignIn() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/signin/?next=${next}`);
}

/** The signed-in profile; sends a guest to the sign-in page. */
export async function requireUser() {
  const user = await currentUser();
  if (!user) {
    goToSignIn();
    return new Promise(() => {}); // the page is leaving: nothing more to draw
  }
  return user;
}

export function seenKey(user) {
  return `jobboard.events.seen.${user.id}`;
}

function showUnread(events) {
  const badge = $("unread-count");
  if (!badge) return;
  const count = events.length;
  badge.textContent = count >= 100 ? "99+" : String(count);
  badge.hidden = count === 0;
  badge.setAttribute("aria-label", `${badge.textContent} unread`);
}

let unreadWatch = null;

/** Ask for the unread count again now (after marking events read). */
export function refreshUnread() {
  if (unreadWatch) unreadWatch.refresh({ reset: true });
}

function startHeader(user) {
  $("nav-member").hidden = false;
  $("nav-guest").hidden = true;
  $("sign-out").addEventListener("click", async () => {
    try {
      await api("DELETE", "/api/session/");
    } catch {
      // Signed out already (an expired or revoked session): the cookies go either way.
    }
    location.assign("/signin/");
  });
  unreadWatch = watch(() => {
    const seen = localStorage.getItem(seenKey(user));
    return `/api/events/?limit=100${seen ? `&after=${encodeURIComponent(seen)}` : ""}`;
  }, showUnread);
}

document.addEventListener("jobboard:signed-out", () => {
  if (document.body.dataset.public === undefined) goToSignIn();
});

/** Start a page: the header, the time zone labels; resolves to the signed-in user (or
 * null on pages open to guests). */
export async function startPage({ guests = false } = {}) {
  if (guests) document.body.dataset.public = "";
  for (const node of document.querySelectorAll("[data-timezone]")) {
    node.textContent = `your time zone, ${Intl.DateTimeFormat().resolvedOptions().timeZone}`;
  }
  let user = null;
  try {
    user = guests ? await currentUser() : await requireUser();
  } catch (error) {
    if (!guests) throw error;
  }
  if (user) startHeader(user);
  return user;
}

// --- confirmations --------------------------------------------------------------------

/** Ask a yes/no question in the page's dialog; resolves true for yes. */
export function confirmAction(question) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = question;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-yes").removeEventListener("click", yes);
      $("confirm-no").removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    $("confirm-yes").addEventListener("click", yes);
    $("confirm-no").addEventListener("click", no);
    dialog.addEventListener("cancel", no);
    dialog.showModal();
    $("confirm-no").focus();
  });
}

// --- kinds ---------------------------------------------------------------------------------

let kinds = null;

export function loadKinds() {
  if (!kinds) kinds = api("GET", "/api/kinds/").then((answer) => answer.body);
  return kinds;
}

export async function fillKindFilters() {
  const list = await loadKinds();
  for (const select of document.querySelectorAll("select[data-kinds]")) {
    for (const kind of list) select.append(el("option", { value: kind.kind }, kind.kind));
  }
}

// --- lists with filters, sorting and pages ------------------------------------------------

/**
 * A list of `endpoint` kept live: the filter form `<prefix>-filters`, the pager
 * `<prefix>-prev/next/page`, items drawn by `renderItem` into `<prefix>-list`. The
 * filters and page live in the address bar, so a list can be bookmarked and reloaded.
 */
export function liveList(prefix, endpoint, renderItem, { pageSize = 20 } = {}) {
  const form = $(`${prefix}-filters`);
  const params = new URLSearchParams(location.search);
  let page = Number(params.get("page")) || 1;

  if (form) {
    for (const field of form.elements) {
      if (!field.name) continue;
      const values = params.getAll(field.name);
      if (field.type === "checkbox") field.checked = values.includes(field.value);
      else if (values.length) field.value = values[0];
    }
  }

  function query() {
    const search = new URLSearchParams();
    if (form) {
      for (const [name, value] of new FormData(form)) {
        if (value !== "") search.append(name, value);
      }
    }
    search.set("page", String(page));
    return search;
  }

  function path() {
    const search = query();
    search.set("page_size", String(pageSize));
    return `${endpoint}?${search}`;
  }

  function render(items, headers) {
    const list = $(`${prefix}-list`);
    list.replaceChildren(...items.map(renderItem));
    $(`${prefix}-empty`).hidden = items.length > 0;
    let meta = {};
    try {
      meta = JSON.parse(headers.get("X-Pagination") || "{}");
    } catch {
      meta = {};
    }
    const total = meta.total ?? items.length;
    const pages = Math.max(meta.total_pages ?? 1, 1);
    $(`${prefix}-total`).textContent = `${total} in all`;
    $(`${prefix}-page`).textContent = `Page ${page} of ${pages}`;
    $(`${prefix}-prev`).disabled = page <= 1;
    $(`${prefix}-next`).disabled = page >= pages;
    const error = $(`${prefix}-filters-error`);
    if (error) error.textContent = "";
    setState("ready");
  }

  const live = watch(path, render, {
    onError: (error) => {
      const slot = $(`${prefix}-filters-error`) || $("page-error");
      slot.textContent = error.message;
      slot.hidden = false;
      setState("ready");
    },
  });

  function go(newPage) {
    page = newPage;
    history.replaceState(null, "", `?${query()}`);
    live.refresh({ reset: true });
  }

  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      go(1);
    });
  }
  $(`${prefix}-prev`).addEventListener("click", () => go(Math.max(1, page - 1)));
  $(`${prefix}-next`).addEventListener("click", () => go(page + 1));
  return live;
}

/** A job as a card in a list: its name links to its page. */
export function jobCard(job, extra = []) {
  return el(
    "li",
    { class: "card", dataset: { jobId: job.id } },
    el("h3", {}, el("a", { href: `/jobs/${job.id}/` }, job.name)),
    el(
      "ul",
      { class: "meta" },
      el("li", {}, statusBadge(job.status)),
      el("li", {}, `kind ${job.kind}`),
      el("li", {}, "scheduled ", when(job.scheduled_time)),
      el("li", {}, "posted ", when(job.created_at)),
      extra,
    ),
  );
}

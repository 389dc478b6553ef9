// The dashboard page: signs in against the API, then shows the caller's numbers.
// Plain browser JavaScript, no libraries and no network beyond this app's own API.
// Tokens live in sessionStorage: they survive a reload of this tab and die with it.
(() => {
  "use strict";

  const JOB_STATUSES = ["pending", "in_progress", "completed", "failed", "cancelled"];
  const BID_STATUSES = ["pending", "accepted", "rejected", "withdrawn"];
  const QUEUE_STATUSES = ["todo", "doing", "succeeded", "failed", "cancelled", "aborted"];
  const TOKENS_KEY = "jobboard.tokens";
  const EMAIL_KEY = "jobboard.email";
  const REFRESH_EVERY_MS = 30000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const numberFormat = new Intl.NumberFormat("en-US");

  const $ = (id) => document.getElementById(id);
  let refreshTimer = null;

  // --- tokens and API calls -------------------------------------------------------

  function loadTokens() {
    try {
      return JSON.parse(sessionStorage.getItem(TOKENS_KEY));
    } catch {
      return null;
    }
  }

  function saveTokens(tokens) {
    sessionStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
  }

  function forgetTokens() {
    sessionStorage.removeItem(TOKENS_KEY);
    sessionStorage.removeItem(EMAIL_KEY);
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function request(method, path, { token, json } = {}) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (json !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = { message: `HTTP ${response.status} ${response.statusText}` };
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return { body, headers: response.headers };
  }

  // An expired access token is renewed with the refresh token, then the call is retried.
  // A refresh token works once (the API revokes every token of the login when one comes
  // back), so calls that fail together share one renewal, and a call that fails after
  // another renewed the tokens uses the new ones.
  let renewal = null;

  function renewTokens(used) {
    const current = loadTokens();
    if (current && current.access_token !== used.access_token) return Promise.resolve(current);
    if (!renewal) {
      renewal = request("POST", "/api/token/refresh/", { token: used.refresh_token })
        .then(({ body }) => {
          saveTokens(body);
          return body;
        })
        .finally(() => {
          renewal = null;
        });
    }
    return renewal;
  }

  async function authorized(method, path) {
    const tokens = loadTokens();
    if (!tokens) throw new ApiError(401, { message: "Please sign in." });
    try {
      return await request(method, path, { token: tokens.access_token });
    } catch (error) {
      if (error.status !== 401 || !tokens.refresh_token) throw error;
      const renewed = await renewTokens(tokens);
      return request(method, path, { token: renewed.access_token });
    }
  }

  // --- rendering --------------------------------------------------------------------

  function element(tag, attributes = {}, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attributes = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function label(status) {
    return status.replace("_", " ");
  }

  function countCell(testId, value) {
    return element(
      "td",
      { class: "count", "data-testid": testId, "data-value": String(value) },
      numberFormat.format(value),
    );
  }

  function renderCounts(section, counts, statuses) {
    const table = $(`${section}-counts`);
    table.replaceChildren();
    const keys = "total" in counts ? [...statuses, "total"] : statuses;
    for (const key of keys) {
      const row = element("tr", key === "total" ? { class: "total" } : {});
      const name = element("th", { scope: "row" });
      name.append(element("span", { class: `dot status-${key}` }), label(key));
      row.append(name, countCell(`${section}-${key}`, counts[key]));
      table.append(row);
    }
  }

  // A bar per status, its count written above it; the scale starts at zero.
  function renderChart(containerId, testIdPrefix, title, counts) {
    const width = 460;
    const height = 240;
    const margin = { top: 28, right: 12, bottom: 34, left: 12 };
    const plotHeight = height - margin.top - margin.bottom;
    const slot = (width - margin.left - margin.right) / JOB_STATUSES.length;
    const barWidth = slot * 0.62;
    const largest = Math.max(1, ...JOB_STATUSES.map((status) => counts[status]));

    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `${containerId}-title`,
      class: "bar-chart",
    });
    const summary = JOB_STATUSES.map((s) => `${label(s)} ${counts[s]}`).join(", ");
    chart.append(svg("title", { id: `${containerId}-title` }, `${title}: ${summary}`));
    if (counts.total === 0) {
      chart.append(
        svg("text", { x: width / 2, y: margin.top + plotHeight / 2, class: "chart-empty" }, "No jobs yet"),
      );
    }
    const baseline = margin.top + plotHeight;
    chart.append(
      svg("line", {
        x1: margin.left, x2: width - margin.right, y1: baseline, y2: baseline, class: "axis",
      }),
    );
    JOB_STATUSES.forEach((status, index) => {
      const value = counts[status];
      const barHeight = value === 0 ? 0 : Math.max(2, (value / largest) * plotHeight);
      const x = margin.left + index * slot + (slot - barWidth) / 2;
      const centre = x + barWidth / 2;
      chart.append(
        svg("rect", {
          x, y: baseline - barHeight, width: barWidth, height: barHeight, rx: 3,
          class: `bar status-${status}`, "data-testid": `${testIdPrefix}-bar-${status}`,
        }),
        svg(
          "text",
          {
            x: centre, y: baseline - barHeight - 8, class: "bar-value",
            "data-testid": `${testIdPrefix}-value-${status}`, "data-value": String(value),
          },
          numberFormat.format(value),
        ),
        svg("text", { x: centre, y: baseline + 22, class: "bar-label" }, label(status)),
      );
    });
    $(containerId).replaceChildren(chart);
  }

  function formatTime(iso) {
    if (!iso) return "—";
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function renderRecentJobs(jobs, pagination) {
    const body = $("recent-jobs").querySelector("tbody");
    body.replaceChildren();
    for (const job of jobs) {
      const row = element("tr", { "data-testid": "recent-job", "data-job-id": String(job.id) });
      const status = element("td");
      status.append(element("span", { class: `badge status-${job.status}` }, label(job.status)));
      row.append(
        element("td", { class: "name" }, job.name),
        element("td", {}, job.kind),
        status,
        element("td", {}, formatTime(job.scheduled_time)),
        element("td", {}, formatTime(job.created_at)),
      );
      body.append(row);
    }
    $("recent-empty").hidden = jobs.length > 0;
    const total = pagination && pagination.total;
    $("recent-total").textContent =
      total !== undefined ? `(latest ${jobs.length} of ${numberFormat.format(total)})` : "";
  }

  function formatDate(isoDate) {
    if (!isoDate) return "—";
    // A due date is a calendar date: shown as it is, never shifted by the viewer's zone.
    return new Date(`${isoDate}T00:00:00Z`).toLocaleDateString(undefined, {
      dateStyle: "medium",
      timeZone: "UTC",
    });
  }

  function renderAssignedJobs(jobs, pagination) {
    const body = $("assigned-jobs").querySelector("tbody");
    body.replaceChildren();
    for (const job of jobs) {
      const row = element("tr", { "data-testid": "assigned-job", "data-job-id": String(job.id) });
      const status = element("td");
      status.append(element("span", { class: `badge status-${job.status}` }, label(job.status)));
      row.append(
        element("td", { class: "name" }, job.name),
        status,
        element(
          "td",
          { "data-testid": "assigned-due", "data-due-date": job.due_date || "" },
          formatDate(job.due_date),
        ),
        element("td", {}, `#${job.owner_id}`),
      );
      body.append(row);
    }
    $("assigned-empty").hidden = jobs.length > 0;
    const total = pagination && pagination.total;
    $("assigned-total").textContent =
      total !== undefined ? `(latest ${jobs.length} of ${numberFormat.format(total)})` : "";
  }

  function formatAge(seconds) {
    if (seconds === null || seconds === undefined) return "none waiting";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  }

  function renderQueue(queue) {
    const section = $("queue");
    if (!queue) {
      section.hidden = true;
      return;
    }
    section.hidden = false;
    const waiting = $("queue-waiting");
    waiting.textContent = numberFormat.format(queue.waiting);
    waiting.dataset.value = String(queue.waiting);
    const oldest = $("queue-oldest-waiting");
    oldest.textContent = formatAge(queue.oldest_waiting_seconds);
    oldest.dataset.value = queue.oldest_waiting_seconds === null ? "" : String(queue.oldest_waiting_seconds);
    const workers = $("queue-live-workers");
    workers.textContent = numberFormat.format(queue.live_workers);
    workers.dataset.value = String(queue.live_workers);
    workers.classList.toggle("alarm", queue.live_workers === 0);

    const table = $("queue-table");
    const head = element("tr");
    head.append(
      element("th", {}, "queue"),
      ...QUEUE_STATUSES.map((s) => element("th", { class: "count" }, s)),
    );
    table.querySelector("thead").replaceChildren(head);
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const [name, counts] of Object.entries(queue.queues).sort()) {
      const row = element("tr");
      row.append(element("th", { scope: "row" }, name));
      for (const status of QUEUE_STATUSES) {
        row.append(countCell(`queue-${name}-${status}`, counts[status] || 0));
      }
      body.append(row);
    }
  }

  // --- page states ------------------------------------------------------------------

  function setState(state) {
    document.body.dataset.state = state;
  }

  function showSignIn(message) {
    clearInterval(refreshTimer);
    $("dashboard").hidden = true;
    $("session").hidden = true;
    $("verify").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.textContent = message || "";
    error.hidden = !message;
    setState("signed-out");
    $("signin-email").focus();
  }

  async function loadDashboard() {
    setState("loading");
    try {
      const [dashboard, recent, assigned] = await Promise.all([
        authorized("GET", "/api/dashboard/"),
        authorized("GET", "/api/jobs/?page_size=10").catch((error) => ({ error })),
        authorized("GET", "/api/jobs/assigned/?page_size=10").catch((error) => ({ error })),
      ]);
      renderCounts("jobs", dashboard.body.jobs, JOB_STATUSES);
      renderCounts("assigned", dashboard.body.assigned, JOB_STATUSES);
      renderCounts("bids", dashboard.body.bids, BID_STATUSES);
      renderChart("jobs-chart", "jobs-chart", "My jobs by status", dashboard.body.jobs);
      renderChart(
        "assigned-chart", "assigned-chart", "Jobs assigned to me by status", dashboard.body.assigned,
      );
      renderQueue(dashboard.body.queue);
      $("session-admin").hidden = !dashboard.body.queue;
      if (recent.error) {
        renderRecentJobs([], null);
        $("recent-empty").textContent = `Recent jobs unavailable: ${recent.error.message}`;
      } else {
        const pagination = JSON.parse(recent.headers.get("X-Pagination") || "null");
        renderRecentJobs(recent.body, pagination);
      }
      if (assigned.error) {
        renderAssignedJobs([], null);
        $("assigned-empty").textContent = `Assigned jobs unavailable: ${assigned.error.message}`;
      } else {
        const pagination = JSON.parse(assigned.headers.get("X-Pagination") || "null");
        renderAssignedJobs(assigned.body, pagination);
      }
      $("load-error").hidden = true;
      $("updated-at").textContent = new Date().toLocaleTimeString();
      $("signin").hidden = true;
      $("verify").hidden = true;
      $("session").hidden = false;
      $("session-email").textContent = sessionStorage.getItem(EMAIL_KEY) || "";
      $("dashboard").hidden = false;
      setState("loaded");
      return true;
    } catch (error) {
      if (error.status === 401) {
        forgetTokens();
        showSignIn("Your session has ended; please sign in again.");
        return false;
      }
      const problem = $("load-error");
      problem.textContent = `Could not load the dashboard: ${error.message}`;
      problem.hidden = false;
      $("signin").hidden = true;
      $("session").hidden = false;
      $("dashboard").hidden = false;
      setState("error");
      return true;
    }
  }

  function startRefreshing() {
    clearInterval(refreshTimer);
    refreshTimer = setInterval(() => {
      if (document.visibilityState === "visible") loadDashboard();
    }, REFRESH_EVERY_MS);
  }

  // --- verifying the email address -------------------------------------------------
  // The API wants the code and the account's password: the page never decides anything
  // itself, it shows the API's answer next to the form.

  function showVerify(email, password, notice) {
    $("verify").hidden = false;
    if (email) $("verify-email").value = email;
    if (password) $("verify-password").value = password;
    showVerifyNotice(notice);
    showVerifyError(null);
    setState("verify");
    $("verify-code").focus();
  }

  function showVerifyNotice(message) {
    $("verify-notice").textContent = message || "";
    $("verify-notice").hidden = !message;
  }

  function showVerifyError(message) {
    $("verify-error").textContent = message || "";
    $("verify-error").hidden = !message;
  }

  async function verify(event) {
    event.preventDefault();
    const email = $("verify-email").value.trim();
    const otp = $("verify-code").value.trim();
    const password = $("verify-password").value;
    if (!email || !otp || !password) {
      showVerifyNotice(null);
      showVerifyError("Enter your email, the code from the email and your password.");
      setState("verify");
      return;
    }
    $("verify-submit").disabled = true;
    setState("verifying");
    try {
      await request("POST", "/api/verify-email/", { json: { email, otp, password } });
      const { body } = await request("POST", "/api/login/", { json: { email, password } });
      saveTokens(body);
      sessionStorage.setItem(EMAIL_KEY, email);
      $("verify-password").value = "";
      $("verify-code").value = "";
      $("verify").hidden = true;
      if (await loadDashboard()) startRefreshing();
    } catch (error) {
      showVerifyNotice(null);
      showVerifyError(error.message);
      setState("verify");
    } finally {
      $("verify-submit").disabled = false;
    }
  }

  async function resendCode() {
    const email = $("verify-email").value.trim();
    if (!email) {
      showVerifyError("Enter your email first.");
      return;
    }
    setState("verifying");
    try {
      const { body } = await request("POST", "/api/resend-otp/", { json: { email } });
      showVerifyError(null);
      showVerifyNotice(body.message);
    } catch (error) {
      showVerifyNotice(null);
      showVerifyError(error.message);
    }
    setState("verify");
  }

  async function signIn(event) {
    event.preventDefault();
    const email = $("signin-email").value.trim();
    const password = $("signin-password").value;
    const submit = $("signin-submit");
    if (!email || !password) {
      showSignIn("Enter your email and password.");
      return;
    }
    submit.disabled = true;
    setState("signing-in");
    try {
      const { body } = await request("POST", "/api/login/", { json: { email, password } });
      saveTokens(body);
      sessionStorage.setItem(EMAIL_KEY, email);
      $("signin-password").value = "";
      $("verify").hidden = true;
      if (await loadDashboard()) startRefreshing();
    } catch (error) {
      showSignIn(error.message);
      // Not verified yet: the code from the email, with this password, verifies it.
      if (error.status === 403) {
        $("verify").hidden = false;
        $("verify-email").value = email;
        $("verify-password").value = password;
      }
    } finally {
      submit.disabled = false;
    }
  }

  async function signOut() {
    const tokens = loadTokens();
    forgetTokens();
    if (tokens) {
      // Revoke the access token server-side; the page forgets it either way.
      await request("POST", "/api/logout/", { token: tokens.access_token }).catch(() => {});
    }
    showSignIn();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("verify-form").addEventListener("submit", verify);
    $("verify-resend").addEventListener("click", resendCode);
    $("show-verify").addEventListener("click", () =>
      showVerify($("signin-email").value.trim(), $("signin-password").value),
    );
    $("signout-button").addEventListener("click", signOut);
    $("refresh-button").addEventListener("click", loadDashboard);
    if (loadTokens()) {
      loadDashboard().then((signedIn) => signedIn && startRefreshing());
    } else {
      showSignIn();
    }
  });
})();

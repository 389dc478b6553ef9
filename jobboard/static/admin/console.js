// The operations console: reads /api/admin/ and shows it, live. No library, no network
// beyond this app's own API; every rule lives in the API, this page only asks and shows.
// How it signs in and calls the API is session.js's business alone.

import { ApiError, call, signIn, signOut, signedInAs } from "./session.js";

const EVERY_MS = 4000; // at most 5 s between two looks at a view
const SVG_NS = "http://www.w3.org/2000/svg";
const JOBS_PAGE_SIZE = 50;
const ACTION_WORDS = { retry: "Retry", cancel: "Cancel", run_now: "Run now" };
// The jobs list counts exactly up to this many matches; one more means "more than".
const COUNT_CAP = 100000;

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat();

// --- small DOM helpers ---------------------------------------------------------------

function element(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function row(cells) {
  const tr = element("tr");
  for (const cell of cells) {
    if (cell instanceof Node) {
      const td = element("td");
      td.append(cell);
      tr.append(td);
    } else {
      const { text, className } = typeof cell === "object" && cell !== null ? cell : { text: cell };
      tr.append(element("td", className ? { class: className } : {}, text ?? ""));
    }
  }
  return tr;
}

function when(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" }).format(
    new Date(iso),
  );
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${Math.round(value / 60)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

function firstLine(text) {
  return (text || "").split("\n")[0];
}

function showError(id, error) {
  const node = $(id);
  if (!error) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.textContent = error instanceof ApiError ? error.message : String(error);
  node.hidden = false;
}

// --- live views: conditional GETs, paused while the tab is hidden ---------------------

const views = [];

/** Keep a view fresh: GET `path()` every EVERY_MS with If-None-Match, render on change. */
function live(path, render) {
  const view = { path, render, etag: null, asked: null, busy: null };
  view.poll = () => {
    if (view.busy) return view.busy;
    const url = view.path();
    if (url !== view.asked) view.etag = null; // another filter or page: a new answer
    const headers = view.etag ? { "If-None-Match": view.etag } : {};
    view.busy = call("GET", url, { headers })
      .then((answer) => {
        view.asked = url;
        if (answer.status !== 304) {
          view.etag = answer.headers.get("ETag");
          view.render(answer.body, answer.headers);
        }
        showError("load-error", null);
        $("updated-at").textContent = new Date().toLocaleTimeString();
      })
      .catch((error) => {
        if (error.status !== 401) showError("load-error", error);
      })
      .finally(() => {
        view.busy = null;
      });
    return view.busy;
  };
  views.push(view);
  return view;
}

let timer = null;

function schedule() {
  clearTimeout(timer);
  if (document.hidden || !signedInAs()) return;
  timer = setTimeout(async () => {
    await Promise.all(views.map((view) => view.poll()));
    schedule();
  }, EVERY_MS);
}

async function refreshAll() {
  await Promise.all(views.map((view) => view.poll()));
  schedule();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(timer);
    $("live-state").textContent = "paused";
  } else if (signedInAs()) {
    $("live-state").textContent = "live";
    refreshAll();
  }
});

// --- queues ---------------------------------------------------------------------------

function throughputChart(perMinute, name) {
  const width = 180;
  const height = 36;
  const most = Math.max(1, ...perMinute);
  const step = width / perMinute.length;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "spark",
    role: "img",
    "aria-label": `${name}: ${numbers.format(perMinute.reduce((a, b) => a + b, 0))} finished in the last hour, at most ${most} a minute`,
  });
  chart.append(svg("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: "axis" }));
  perMinute.forEach((count, index) => {
    if (!count) return;
    const barHeight = Math.max(1, (count / most) * (height - 2));
    const bar = svg("rect", {
      x: (index * step).toFixed(2),
      y: (height - 1 - barHeight).toFixed(2),
      width: Math.max(1, step - 0.6).toFixed(2),
      height: barHeight.toFixed(2),
      class: "spark-bar",
    });
    const title = svg("title");
    title.textContent = `${perMinute.length - index} min ago: ${count}`;
    bar.append(title);
    chart.append(bar);
  });
  return chart;
}

function pauseButton(queue) {
  const button = element(
    "button",
    { type: "button", class: "secondary", "data-testid": `${queue.paused ? "resume" : "pause"}-${queue.name}` },
    queue.paused ? "Resume" : "Pause",
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await call("POST", `/api/admin/queues/${encodeURIComponent(queue.name)}/${queue.paused ? "resume" : "pause"}/`);
      await refreshAll();
    } catch (error) {
      showError("load-error", error);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function renderQueues(queues) {
  const body = $("queues").querySelector("tbody");
  body.replaceChildren(
    ...queues.map((queue) => {
      const name = element("span", {}, queue.name);
      if (queue.paused) name.append(" ", element("span", { class: "badge status-cancelled" }, "paused"));
      const tr = row([
        name,
        { text: numbers.format(queue.waiting), className: "count" },
        { text: numbers.format(queue.scheduled), className: "count" },
        { text: numbers.format(queue.running), className: "count" },
        { text: numbers.format(queue.failed), className: "count" },
        { text: seconds(queue.oldest_waiting_seconds), className: "count" },
        throughputChart(queue.finished_per_minute, queue.name),
        { text: `${seconds(queue.lateness_p50)} / ${seconds(queue.lateness_p99)}`, className: "count" },
        { text: `${seconds(queue.duration_p50)} / ${seconds(queue.duration_p99)}`, className: "count" },
        pauseButton(queue),
      ]);
      tr.dataset.queue = queue.name;
      tr.dataset.waiting = queue.waiting;
      tr.dataset.paused = queue.paused;
      return tr;
    }),
  );
}

// --- failures ---------------------------------------------------------------------------

function renderFailures(groups) {
  const body = $("failures").querySelector("tbody");
  $("failures-empty").hidden = groups.length > 0;
  body.replaceChildren(
    ...groups.map((group) => {
      const retry = element("button", { type: "button", class: "secondary" }, `Retry ${numbers.format(group.count)}`);
      retry.addEventListener("click", () =>
        bulk("retry", { filter: { status: ["failed"], kind: group.kind, error: group.error || undefined } }, group.count),
      );
      return row([
        group.kind,
        { text: group.error || "(no message)", className: "error-text" },
        { text: numbers.format(group.count), className: "count" },
        when(group.last_seen),
        retry,
      ]);
    }),
  );
}

// --- jobs -------------------------------------------------------------------------------

let filter = {};
let page = 1;
let total = 0;
const selected = new Set();

function jobsPath() {
  const query = new URLSearchParams({ page: String(page), page_size: String(JOBS_PAGE_SIZE) });
  for (const [key, value] of Object.entries(filter)) {
    for (const item of [].concat(value)) query.append(key, item);
  }
  return `/api/admin/jobs/?${query}`;
}

function readFilter() {
  const form = $("filter-form");
  const next = {};
  const statuses = [...form.querySelectorAll("input[name=status]:checked")].map((box) => box.value);
  if (statuses.length) next.status = statuses;
  for (const name of ["kind", "owner", "error", "q"]) {
    const value = form.elements[name].value.trim();
    if (value) next[name] = value;
  }
  return next;
}

function howMany(count) {
  return count > COUNT_CAP ? `more than ${numbers.format(COUNT_CAP)}` : numbers.format(count);
}

function updateBulkButtons() {
  $("bulk-selected").disabled = selected.size === 0;
  $("bulk-selected").textContent = `on the ${numbers.format(selected.size)} selected`;
  $("bulk-matching").textContent = Object.keys(filter).length
    ? `on all ${howMany(total)} matching the filter`
    : `on all ${howMany(total)} jobs`;
}

function renderJobs(jobs, headers) {
  const pagination = JSON.parse(headers.get("X-Pagination") || "{}");
  total = pagination.total ?? jobs.length;
  $("jobs-total").textContent = `${howMany(total)} matching`;
  $("jobs-empty").hidden = jobs.length > 0;
  $("page-label").textContent = `page ${page} of ${Math.max(1, pagination.total_pages || 1)}`;
  $("page-previous").disabled = page <= 1;
  $("page-next").disabled = !pagination.next_page;
  $("select-all").checked = false;
  const body = $("jobs").querySelector("tbody");
  body.replaceChildren(
    ...jobs.map((job) => {
      const box = element("input", { type: "checkbox", "aria-label": `Select job ${job.id}` });
      box.checked = selected.has(job.id);
      box.addEventListener("change", () => {
        if (box.checked) selected.add(job.id);
        else selected.delete(job.id);
        updateBulkButtons();
      });
      const open = element("button", { type: "button", class: "link" }, job.name);
      open.addEventListener("click", () => showJob(job.id));
      const status = element("span", { class: `badge status-${job.status}` }, job.status.replace("_", " "));
      const tr = row([
        box,
        job.id,
        open,
        job.owner_email,
        job.kind,
        status,
        { text: job.attempts, className: "count" },
        { text: firstLine(job.last_error), className: "error-text" },
        when(job.scheduled_time),
      ]);
      tr.dataset.jobId = job.id;
      tr.dataset.status = job.status;
      return tr;
    }),
  );
  updateBulkButtons();
}

async function showJob(jobId) {
  try {
    const { body } = await call("GET", `/api/admin/jobs/${jobId}/`);
    const { job, result, attempts } = body;
    $("detail-id").textContent = `${job.id} · ${job.name}`;
    const fields = [
      ["Owner", job.owner_email],
      ["Kind", job.kind],
      ["Status", job.status],
      ["Attempts", `${job.attempts} of ${job.max_attempts}`],
      ["Scheduled", when(job.scheduled_time)],
      ["Started", when(job.started_at)],
      ["Finished", when(job.finished_at)],
      ["Params", JSON.stringify(job.params)],
      ["Last error", job.last_error || ""],
      ["Result", result ? JSON.stringify(result.output ?? result.error_message) : ""],
    ];
    $("detail-fields").replaceChildren(
      ...fields.flatMap(([name, value]) => [element("dt", {}, name), element("dd", {}, value)]),
    );
    $("detail-attempts-empty").hidden = attempts.length > 0;
    $("detail-attempts").querySelector("tbody").replaceChildren(
      ...attempts.map((attempt) =>
        row([
          attempt.attempt,
          when(attempt.started_at),
          when(attempt.finished_at),
          { text: attempt.duration_ms ?? "", className: "count" },
          attempt.outcome,
          { text: firstLine(attempt.error), className: "error-text" },
        ]),
      ),
    );
    $("job-detail").hidden = false;
    $("job-detail").scrollIntoView({ block: "nearest" });
  } catch (error) {
    showError("load-error", error);
  }
}

// --- bulk actions, confirmed first ------------------------------------------------------

function confirmed(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "go"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

async function bulk(action, target, count) {
  const noun = count === 1 ? "job" : "jobs";
  const what = target.ids ? "selected" : "matching";
  const ok = await confirmed(
    `${ACTION_WORDS[action]} ${howMany(count)} ${what} ${noun}? Each one that cannot take it is skipped.`,
  );
  if (!ok) return;
  $("bulk-result").textContent = `${ACTION_WORDS[action]}: working…`;
  try {
    const { body } = await call("POST", "/api/admin/jobs/actions/", { json: { action, ...target } });
    $("bulk-result").textContent = `${ACTION_WORDS[action]}: ${numbers.format(body.changed)} changed, ${numbers.format(body.skipped)} skipped of ${numbers.format(body.matched)} matched.`;
    $("bulk-result").dataset.changed = body.changed;
    selected.clear();
    await refreshAll();
  } catch (error) {
    $("bulk-result").textContent = "";
    showError("load-error", error);
  }
}

// --- workers and audit --------------------------------------------------------------------

function renderWorkers(workers) {
  $("workers-empty").hidden = workers.length > 0;
  $("workers").querySelector("tbody").replaceChildren(
    ...workers.map((worker) =>
      row([
        worker.id,
        when(worker.started_at),
        when(worker.last_heartbeat),
        worker.running.length
          ? worker.running.map((entry) => (entry.job_id ? `job ${entry.job_id}` : entry.task)).join(", ")
          : "idle",
      ]),
    ),
  );
}

function describe(entry) {
  const target = entry.target || {};
  if (target.queue) return `${entry.action} ${target.queue}`;
  if (target.ids) return `${entry.action} ${numbers.format(target.ids.length)} ids`;
  const named = Object.entries(target.filter || {})
    .map(([key, value]) => `${key}=${[].concat(value).join("|")}`)
    .join(" ");
  return `${entry.action} ${named || "all jobs"}`;
}

function renderAudit(entries) {
  $("audit").querySelector("tbody").replaceChildren(
    ...entries.map((entry) =>
      row([
        when(entry.created_at),
        entry.admin_email,
        describe(entry),
        { text: entry.matched === null ? "" : `${numbers.format(entry.changed)} / ${numbers.format(entry.matched)}`, className: "count" },
      ]),
    ),
  );
}

// --- sign-in and start ------------------------------------------------------------------

function start() {
  $("signin").hidden = true;
  $("console").hidden = false;
  $("session").hidden = false;
  $("session-email").textContent = signedInAs();
  document.body.dataset.state = "live";
  refreshAll();
}

function stop() {
  clearTimeout(timer);
  $("console").hidden = true;
  $("session").hidden = true;
  $("signin").hidden = false;
  document.body.dataset.state = "signed-out";
}

document.addEventListener("jobboard:signed-out", stop);

document.addEventListener("DOMContentLoaded", () => {
  live(() => "/api/admin/queues/", renderQueues);
  live(() => "/api/admin/failures/?page_size=20", renderFailures);
  live(jobsPath, renderJobs);
  live(() => "/api/admin/workers/", renderWorkers);
  live(() => "/api/admin/audit/?page_size=10", renderAudit);

  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("signin-error", null);
    $("signin-submit").disabled = true;
    try {
      await signIn($("signin-email").value.trim(), $("signin-password").value);
      start();
    } catch (error) {
      showError("signin-error", error);
    } finally {
      $("signin-submit").disabled = false;
    }
  });
  $("signout-button").addEventListener("click", async () => {
    await signOut();
    stop();
  });
  $("filter-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    filter = readFilter();
    page = 1;
    selected.clear();
    await refreshAll();
  });
  $("filter-clear").addEventListener("click", async () => {
    $("filter-form").reset();
    filter = {};
    page = 1;
    selected.clear();
    await refreshAll();
  });
  $("page-previous").addEventListener("click", () => {
    page = Math.max(1, page - 1);
    refreshAll();
  });
  $("page-next").addEventListener("click", () => {
    page += 1;
    refreshAll();
  });
  $("select-all").addEventListener("change", (event) => {
    for (const box of $("jobs").querySelectorAll("tbody input[type=checkbox]")) {
      box.checked = event.target.checked;
      box.dispatchEvent(new Event("change"));
    }
  });
  $("bulk-selected").addEventListener("click", () =>
    bulk($("bulk-action").value, { ids: [...selected] }, selected.size),
  );
  $("bulk-matching").addEventListener("click", () => {
    const named = Object.keys(filter).length > 0;
    bulk($("bulk-action").value, named ? { filter } : { all: true }, total);
  });
  $("detail-close").addEventListener("click", () => {
    $("job-detail").hidden = true;
  });

  if (signedInAs() !== null) start();
  else stop();
});

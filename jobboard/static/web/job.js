// A job's page, for whoever may see it: its owner (manage, bids, accept), a bidder (bid,
// edit, withdraw), its assignee (deliver, give back), both parties (review). What each
// may do is what the API answers; the page only shows the answers, live.
import {
  $,
  api,
  ApiError,
  clearErrors,
  confirmAction,
  dueDate,
  el,
  personName,
  ratingText,
  setState,
  showError,
  startPage,
  statusBadge,
  watch,
  when,
} from "./common.js";
import { formBody } from "./forms.js";

const user = await startPage();
const jobId = document.body.dataset.jobId;
let job = null;
let role = null; // "owner" | "assignee" | "admin" | "bidder"
let myPendingBid = null;
let resultShownFor = null;
let drawings = 0;
const profiles = new Map();

function profileOf(id) {
  if (!profiles.has(id)) {
    profiles.set(
      id,
      api("GET", `/api/users/${id}/`)
        .then((answer) => answer.body)
        .catch(() => null),
    );
  }
  return profiles.get(id);
}

function notFound() {
  $("not-found").hidden = false;
  for (const id of ["job-summary", "owner-actions", "params-section", "result-section", "bids-section", "bid-section", "deliver-section", "review-section"]) {
    $(id).hidden = true;
  }
  setState("ready");
}

// --- the job itself ------------------------------------------------------------------------

function roleOf(seen) {
  if (seen.owner_id === user.id) return "owner";
  if (seen.assignee_id === user.id) return "assignee";
  if (seen.params !== undefined) return "admin";
  return "bidder";
}

async function drawJob(seen) {
  if (jobPath.endsWith("/public/") && seen.assignee_id === user.id) {
    // This person's bid won: as the assignee they now read the whole job.
    jobPath = `/api/jobs/${jobId}/`;
    jobWatch.refresh({ reset: true });
    return;
  }
  // Answers are drawn in the order they came: a drawing that waits for a profile gives
  // way to a newer answer that arrived meanwhile.
  const drawing = ++drawings;
  job = seen;
  role = roleOf(seen);
  $("page-title").textContent = seen.name;
  $("job-name").textContent = seen.name;
  $("job-status").replaceWith(Object.assign(statusBadge(seen.status), { id: "job-status" }));
  $("job-status").dataset.testid = "job-status";
  $("job-role").textContent = {
    owner: "You posted this job.",
    assignee: "This job is assigned to you.",
    admin: "You see this job as an administrator.",
    bidder: "Open for bids.",
  }[role];
  $("job-description").textContent = seen.description || "";
  const facts = [
    ["Kind", seen.kind],
    ["Scheduled", when(seen.scheduled_time)],
    ["Priority", String(seen.priority)],
    ["Attempts", `${seen.attempts} of ${seen.max_attempts}`],
    ["Posted", when(seen.created_at)],
    ["Finished", when(seen.finished_at)],
  ];
  if (seen.due_date !== undefined && seen.assignee_id) facts.push(["Due", dueDate(seen.due_date)]);
  if (seen.last_error) facts.push(["Last error", seen.last_error]);
  $("job-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  $("job-summary").hidden = false;

  const owner = await profileOf(seen.owner_id);
  if (drawing !== drawings) return;
  $("job-owner").replaceChildren(
    "Posted by ",
    el("a", { href: `/users/${seen.owner_id}/` }, personName(owner || { id: seen.owner_id })),
    owner ? ` (${ratingText(owner.rating)})` : "",
    seen.assignee_id && role !== "assignee" ? " · assigned to " : "",
  );
  if (seen.assignee_id && role !== "assignee") {
    const assignee = await profileOf(seen.assignee_id);
    if (drawing !== drawings) return;
    $("job-owner").append(
      el("a", { href: `/users/${seen.assignee_id}/` }, personName(assignee || { id: seen.assignee_id })),
    );
  }

  const isOwner = role === "owner" || role === "admin";
  $("owner-actions").hidden = !isOwner;
  if (isOwner) {
    const pending = seen.status === "pending" && !seen.assignee_id;
    $("job-run-now").hidden = !pending || seen.kind === "manual";
    $("job-cancel").hidden = seen.status !== "pending";
    $("job-retry").hidden = seen.status !== "failed";
    $("job-take-back").hidden = !(seen.status === "in_progress" && seen.assignee_id);
    $("edit-details").hidden = !pending;
    const anything = ["job-run-now", "job-cancel", "job-retry", "job-take-back", "edit-details"];
    $("owner-actions").hidden = anything.every((id) => $(id).hidden);
    if (!$("edit-details").open) fillEdit(seen);
  }
  $("params-section").hidden = seen.params === undefined;
  if (seen.params !== undefined) $("job-params").textContent = JSON.stringify(seen.params, null, 2);

  $("deliver-section").hidden = !(role === "assignee" && seen.status === "in_progress");
  if (role === "assignee") $("deliver-due").replaceChildren("Due ", dueDate(seen.due_date));
  const party = role === "owner" || role === "assignee";
  $("review-section").hidden = !(party && seen.status === "completed" && seen.assignee_id);
  if (seen.status === "completed" && resultShownFor !== seen.updated_at && seen.params !== undefined) {
    resultShownFor = seen.updated_at;
    showResult();
  }
  if (seen.params !== undefined) showAttempts();
  startBids();
  setState("ready");
}

function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function fillEdit(seen) {
  const form = $("edit-form");
  form.elements.name.value = seen.name;
  form.elements.description.value = seen.description || "";
  form.elements.scheduled_time.value = localInput(seen.scheduled_time);
  form.elements.priority.value = String(seen.priority);
  form.elements.max_attempts.value = String(seen.max_attempts);
  form.elements.params.value = JSON.stringify(seen.params || {}, null, 2);
}

async function showResult() {
  try {
    const { body } = await api("GET", `/api/jobs/${jobId}/result/`);
    $("result-facts").replaceChildren(
      el("dt", {}, "Completed"),
      el("dd", {}, when(body.completed_at)),
      el("dt", {}, "Duration"),
      el("dd", {}, body.duration_ms === null || body.duration_ms === undefined ? "—" : `${body.duration_ms} ms`),
    );
    $("result-output").textContent = JSON.stringify(body.output, null, 2);
    $("result-section").hidden = false;
  } catch {
    $("result-section").hidden = true;
  }
}

async function showAttempts() {
  try {
    const { body } = await api("GET", `/api/jobs/${jobId}/attempts/`);
    $("attempts-list").replaceChildren(
      ...body.map((attempt) =>
        el(
          "li",
          { class: "card" },
          el(
            "ul",
            { class: "meta" },
            el("li", {}, `attempt ${attempt.attempt}`),
            el("li", {}, statusBadge(attempt.outcome)),
            el("li", {}, "started ", when(attempt.started_at)),
            attempt.duration_ms !== null ? el("li", {}, `${attempt.duration_ms} ms`) : null,
            attempt.error ? el("li", {}, attempt.error) : null,
          ),
        ),
      ),
    );
    $("attempts-section").hidden = body.length === 0;
  } catch {
    $("attempts-section").hidden = true; // no attempts to show (or none recorded)
  }
}

// A party (or an admin) reads the whole job; anyone else who may bid reads its public
// fields. Whoever may see neither gets the not-found section.
let jobPath = `/api/jobs/${jobId}/`;
let jobWatch = null;

async function firstLook() {
  try {
    return (await api("GET", jobPath)).body;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
  }
  jobPath = `/api/jobs/${jobId}/public/`;
  try {
    return (await api("GET", jobPath)).body;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    return null;
  }
}

const first = await firstLook();
if (!first) {
  notFound();
} else {
  jobWatch = watch(() => jobPath, drawJob, {
    onError: async (error) => {
      // A bidder whose bid was accepted becomes the assignee: the full job opens up.
      if (error instanceof ApiError && error.status === 404) {
        const seen = await firstLook();
        if (seen) drawJob(seen);
        else notFound();
      }
    },
  });
  window.jobboardRefresh = () => jobWatch.refresh();
  wireActions();
}

// --- bids ----------------------------------------------------------------------------------

let bidsWatch = null;

function bidsPath() {
  return `/api/jobs/${jobId}/bids/?page_size=100&sort=${encodeURIComponent($("bids-sort").value)}`;
}

function startBids() {
  if (bidsWatch) return;
  bidsWatch = watch(bidsPath, drawBids, {
    onError: (error) => {
      $("bids-error").textContent = error.message;
    },
  });
  $("bids-sort").addEventListener("change", () => bidsWatch.refresh({ reset: true }));
}

function ownerBidCard(bid) {
  const profile = bid.bidder;
  const accept = el("button", { type: "button", class: "accept" }, `Accept ${personName(profile)}'s bid`);
  accept.addEventListener("click", async () => {
    const yes = await confirmAction(
      `Accept ${personName(profile)}'s bid of ${bid.fee} ${bid.currency}? The job goes to them and every other bid is rejected.`,
    );
    if (!yes) return;
    try {
      await api("POST", `/api/jobs/${jobId}/bids/${bid.id}/accept/`);
      refreshAll();
    } catch (error) {
      $("bids-error").textContent = error.message;
    }
  });
  const open = job && job.status === "pending" && !job.assignee_id && bid.status === "pending";
  return el(
    "li",
    { class: "card", dataset: { bidId: bid.id, testid: "bid" } },
    el("h3", {}, el("a", { href: `/users/${profile.id}/` }, personName(profile))),
    el(
      "ul",
      { class: "meta" },
      el("li", {}, statusBadge(bid.status)),
      el("li", {}, `${bid.fee} ${bid.currency}`),
      el("li", {}, "deadline ", dueDate(bid.proposed_deadline)),
      el("li", {}, `rating: ${ratingText(profile.rating)}`),
      el("li", {}, `${profile.completed_jobs} job${profile.completed_jobs === 1 ? "" : "s"} delivered`),
    ),
    bid.comment ? el("p", {}, bid.comment) : null,
    open ? el("div", { class: "actions" }, accept) : null,
  );
}

function drawBids(bids) {
  $("bids-error").textContent = "";
  if (role === "owner" || role === "admin") {
    $("bids-title").textContent = "Bids";
    $("bids-section").hidden = false;
    $("bids-list").replaceChildren(...bids.map(ownerBidCard));
    $("bids-empty").hidden = bids.length > 0;
    $("bid-section").hidden = true;
    return;
  }
  // A bidder (or the assignee) sees their own bids on the job.
  $("bids-title").textContent = "Your bids on this job";
  $("bids-section").hidden = bids.length === 0;
  $("bids-list").replaceChildren(
    ...bids.map((bid) =>
      el(
        "li",
        { class: "card", dataset: { bidId: bid.id, testid: "bid" } },
        el(
          "ul",
          { class: "meta" },
          el("li", {}, statusBadge(bid.status)),
          el("li", {}, `${bid.fee} ${bid.currency}`),
          el("li", {}, "deadline ", dueDate(bid.proposed_deadline)),
        ),
      ),
    ),
  );
  $("bids-empty").hidden = true;
  myPendingBid = bids.find((bid) => bid.status === "pending") || null;
  const canBid = role === "bidder" && job && ["pending", "in_progress"].includes(job.status) && !job.assignee_id;
  $("bid-section").hidden = !(canBid || myPendingBid);
  $("bid-title").textContent = myPendingBid ? "Your bid" : "Place a bid";
  $("bid-submit").textContent = myPendingBid ? "Save bid" : "Place bid";
  $("bid-withdraw").hidden = !myPendingBid;
  const form = $("bid-form");
  if (myPendingBid && !form.contains(document.activeElement)) {
    form.elements.fee.value = myPendingBid.fee;
    form.elements.currency.value = myPendingBid.currency;
    form.elements.proposed_deadline.value = myPendingBid.proposed_deadline;
    form.elements.comment.value = myPendingBid.comment || "";
  }
}

function refreshAll() {
  window.jobboardRefresh && window.jobboardRefresh();
  if (bidsWatch) bidsWatch.refresh();
}

// --- actions -------------------------------------------------------------------------------

function wireActions() {
  const ownerAction = (button, method, path, json, question) => {
    button.addEventListener("click", async () => {
      $("owner-actions-error").textContent = "";
      if (question && !(await confirmAction(question))) return;
      try {
        await api(method, path, json === undefined ? {} : { json });
        refreshAll();
      } catch (error) {
        $("owner-actions-error").textContent = error.message;
      }
    });
  };
  ownerAction($("job-run-now"), "PATCH", `/api/jobs/${jobId}/`, { scheduled_time: null });
  ownerAction($("job-retry"), "POST", `/api/jobs/${jobId}/retry/`);
  ownerAction($("job-cancel"), "DELETE", `/api/jobs/${jobId}/`, undefined, "Cancel this job? It will not run.");
  ownerAction($("job-take-back"), "POST", `/api/jobs/${jobId}/release/`, undefined, "Take the job back from its assignee? It opens for bids again.");

  $("edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors("edit");
    const form = event.target;
    const changes = {
      name: form.elements.name.value,
      description: form.elements.description.value || null,
      priority: Number(form.elements.priority.value),
      max_attempts: Number(form.elements.max_attempts.value),
    };
    if (form.elements.scheduled_time.value !== localInput(job.scheduled_time)) {
      changes.scheduled_time = form.elements.scheduled_time.value
        ? new Date(form.elements.scheduled_time.value).toISOString()
        : null;
    }
    try {
      changes.params = JSON.parse(form.elements.params.value || "{}");
    } catch (error) {
      $("edit-params-error").textContent = `Not valid JSON: ${error.message}`;
      return;
    }
    try {
      await api("PATCH", `/api/jobs/${jobId}/`, { json: changes });
      $("edit-details").open = false;
      refreshAll();
    } catch (error) {
      showError("edit", error);
    }
  });

  $("bid-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors("bid");
    const body = formBody(event.target);
    try {
      if (myPendingBid) {
        await api("PATCH", `/api/jobs/${jobId}/bids/${myPendingBid.id}/`, { json: body });
      } else {
        await api("POST", `/api/jobs/${jobId}/bids/`, { json: body });
      }
      document.activeElement.blur();
      refreshAll();
    } catch (error) {
      showError("bid", error);
    }
  });
  $("bid-withdraw").addEventListener("click", async () => {
    clearErrors("bid");
    if (!myPendingBid || !(await confirmAction("Withdraw your bid?"))) return;
    try {
      await api("DELETE", `/api/jobs/${jobId}/bids/${myPendingBid.id}/`);
      refreshAll();
    } catch (error) {
      showError("bid", error);
    }
  });

  $("deliver-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors("deliver");
    const form = event.target;
    let output;
    try {
      output = JSON.parse(form.elements.output.value || "{}");
    } catch (error) {
      $("deliver-output-error").textContent = `Not valid JSON: ${error.message}`;
      return;
    }
    try {
      await api("POST", `/api/jobs/${jobId}/deliver/`, {
        json: { output, note: form.elements.note.value || null },
      });
      refreshAll();
    } catch (error) {
      showError("deliver", error);
    }
  });
  $("deliver-release").addEventListener("click", async () => {
    clearErrors("deliver");
    if (!(await confirmAction("Give the job back? It opens for bids again."))) return;
    try {
      await api("POST", `/api/jobs/${jobId}/release/`);
      refreshAll();
    } catch (error) {
      showError("deliver", error);
    }
  });

  $("review-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors("review");
    const form = event.target;
    try {
      await api("POST", `/api/jobs/${jobId}/reviews/`, {
        json: { rating: Number(form.elements.rating.value), comment: form.elements.comment.value || null },
      });
      $("review-notice").textContent = "Thank you: your review is in.";
      form.elements.comment.value = "";
    } catch (error) {
      showError("review", error);
    }
  });
}

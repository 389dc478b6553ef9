// Notifications: my events from the feed, newest first, unread ones marked, live.
import { $, api, el, refreshUnread, seenKey, setState, startPage, watch, when } from "./common.js";

const user = await startPage();
const MAX_PAGES = 10;

const SAY = {
  "job.completed": "A job of yours was completed",
  "job.retrying": "An attempt of your job failed; it will be retried",
  "job.failed": "Your job failed",
  "job.cancelled": "Your job was cancelled",
  "bid.placed": "A bid was placed on your job",
  "bid.withdrawn": "A bid on your job was withdrawn",
  "bid.accepted": "Your bid was accepted",
  "bid.rejected": "Your bid was not accepted",
  "job.released": "A job was released",
  "job.due_soon": "A job assigned to you is due soon",
  "job.overdue": "A job of yours is overdue",
  "review.received": "You received a review",
  "plan.ending": "Your plan ends soon",
  "plan.ended": "Your plan ended",
  "webhook.disabled": "A webhook endpoint was disabled",
};

function jobIdOf(event) {
  const data = event.data || {};
  if (data.job && data.job.id) return data.job.id;
  if (data.bid && data.bid.job_id) return data.bid.job_id;
  if (data.review && data.review.job_id) return data.review.job_id;
  return null;
}

let events = [];

function draw() {
  const seen = localStorage.getItem(seenKey(user)) || "";
  const newestFirst = [...events].reverse();
  $("events-list").replaceChildren(
    ...newestFirst.map((event) => {
      const jobId = jobIdOf(event);
      const unread = event.id > seen;
      return el(
        "li",
        { class: `card${unread ? " unread" : ""}`, dataset: { type: event.type } },
        el("h3", {}, SAY[event.type] || event.type, unread ? " (unread)" : ""),
        el(
          "ul",
          { class: "meta" },
          el("li", {}, when(event.timestamp)),
          jobId ? el("li", {}, el("a", { href: `/jobs/${jobId}/` }, `job ${jobId}`)) : null,
        ),
      );
    }),
  );
  $("events-empty").hidden = events.length > 0;
  $("events-total").textContent = `${events.length} notification${events.length === 1 ? "" : "s"}`;
  setState("ready");
}

async function loadAll() {
  events = [];
  let after = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const { body } = await api("GET", `/api/events/?limit=100${after ? `&after=${after}` : ""}`);
    events.push(...body);
    if (body.length < 100) break;
    after = body[body.length - 1].id;
  }
}

await loadAll();
draw();
// New events after the last one shown, live.
watch(
  () => `/api/events/?limit=100${events.length ? `&after=${events[events.length - 1].id}` : ""}`,
  (body) => {
    if (body.length) {
      events.push(...body);
      draw();
    }
  },
);

$("events-mark-read").addEventListener("click", () => {
  if (events.length) localStorage.setItem(seenKey(user), events[events.length - 1].id);
  draw();
  refreshUnread();
});

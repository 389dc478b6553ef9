// My bids across jobs, with their status, live.
import { dueDate, el, liveList, startPage, statusBadge } from "./common.js";

await startPage();
liveList("bids", "/api/bids/", (bid) =>
  el(
    "li",
    { class: "card", dataset: { bidId: bid.id } },
    el("h3", {}, el("a", { href: `/jobs/${bid.job_id}/` }, bid.job ? bid.job.name : `Job ${bid.job_id}`)),
    el(
      "ul",
      { class: "meta" },
      el("li", {}, "bid ", statusBadge(bid.status)),
      el("li", {}, `${bid.fee} ${bid.currency}`),
      el("li", {}, "deadline ", dueDate(bid.proposed_deadline)),
      bid.job ? el("li", {}, "job ", statusBadge(bid.job.status)) : null,
    ),
  ),
);

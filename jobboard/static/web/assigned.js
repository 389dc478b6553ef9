// Jobs assigned to me, with their due dates, live.
import { dueDate, el, fillKindFilters, jobCard, liveList, startPage } from "./common.js";

await startPage();
await fillKindFilters();
liveList("assigned", "/api/jobs/assigned/", (job) =>
  jobCard(job, [el("li", {}, "due ", dueDate(job.due_date))]),
);

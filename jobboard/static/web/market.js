// The open market: other people's jobs open for bids, searched and filtered, live.
import { fillKindFilters, jobCard, liveList, startPage } from "./common.js";

await startPage();
await fillKindFilters();
liveList("market", "/api/jobs/open/", (job) => jobCard(job));

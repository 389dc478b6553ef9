// A page that does not exist, or is not the visitor's to see.
import { setState, startPage } from "./common.js";

await startPage({ guests: true });
setState("ready");

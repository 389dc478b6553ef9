// The landing page: what jobboard is, for guests and members alike.
import { $, setState, startPage } from "./common.js";

const user = await startPage({ guests: true });
$("landing-member").hidden = !user;
setState("ready");

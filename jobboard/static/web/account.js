// My account: the public profile I edit, my plan and its usage, sign out everywhere.
import { $, api, clearErrors, el, setState, showError, startPage, when } from "./common.js";

const user = await startPage();
$("me-email").textContent = user.email;
$("me-public").href = `/users/${user.id}/`;
const form = $("me-form");
form.elements.display_name.value = user.display_name || "";
form.elements.bio.value = user.bio || "";
form.elements.skills.value = (user.skills || []).join(", ");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("me");
  $("me-notice").textContent = "";
  const skills = form.elements.skills.value
    .split(",")
    .map((skill) => skill.trim())
    .filter(Boolean);
  try {
    await api("PATCH", "/api/me/", {
      json: { display_name: form.elements.display_name.value, bio: form.elements.bio.value, skills },
    });
    $("me-notice").textContent = "Saved.";
  } catch (error) {
    showError("me", error);
  }
});

const { body: plan } = await api("GET", "/api/me/plan/");
const facts = [
  ["Plan", plan.plan.name],
  ["Renews or ends", plan.renews_at ? when(plan.renews_at) : "—"],
  ["Running jobs", `${plan.usage.running_jobs} of ${plan.plan.max_running_jobs}`],
  ["Open jobs", `${plan.usage.open_jobs} of ${plan.plan.max_open_jobs}`],
  ["Jobs today", `${plan.usage.jobs_today} of ${plan.plan.jobs_per_day}`],
  ["Bids today", `${plan.usage.bids_today} of ${plan.plan.bids_per_day}`],
  ["Largest params", `${plan.plan.max_params_bytes} bytes`],
];
$("plan-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));

$("sign-out-everywhere").addEventListener("click", async () => {
  try {
    await api("DELETE", "/api/session/all/");
    location.assign("/signin/");
  } catch (error) {
    $("sessions-error").textContent = error.message;
  }
});
setState("ready");

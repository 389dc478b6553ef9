// A person's public profile: name, rating, jobs delivered, skills, bio.
import { $, api, ApiError, personName, ratingText, setState, startPage } from "./common.js";

await startPage();
const userId = document.body.dataset.userId;
try {
  const { body } = await api("GET", `/api/users/${userId}/`);
  $("profile-name").textContent = personName(body);
  $("page-title").textContent = personName(body);
  $("profile-rating").textContent = ratingText(body.rating);
  $("profile-completed").textContent = String(body.completed_jobs);
  $("profile-skills").textContent = body.skills.length ? body.skills.join(", ") : "—";
  $("profile-bio").textContent = body.bio || "";
  $("profile").hidden = false;
} catch (error) {
  if (!(error instanceof ApiError) || error.status !== 404) throw error;
  $("not-found").hidden = false;
}
setState("ready");

// Set a new password with the emailed code, then sign in with it.
import { $, api, clearErrors, setState, showError, startPage } from "./common.js";
import { formBody, prefill } from "./forms.js";

await startPage({ guests: true });
const form = $("reset-form");
prefill(form, ["email"]);
if (new URLSearchParams(location.search).get("sent")) {
  $("reset-notice").textContent = "If the address has an account, we have emailed it a code.";
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("reset");
  const body = formBody(form);
  try {
    await api("POST", "/api/password/reset/", { json: body });
    await api("POST", "/api/session/", {
      json: { email: body.email, password: body.new_password },
    });
    location.assign("/jobs/");
  } catch (error) {
    showError("reset", error);
  }
});
setState("ready");

// Enter the emailed code (with the account's password), then sign in.
import { $, api, clearErrors, setState, showError, startPage } from "./common.js";
import { formBody, prefill } from "./forms.js";

await startPage({ guests: true });
const form = $("verify-form");
prefill(form, ["email"]);
if (new URLSearchParams(location.search).get("new")) {
  $("verify-notice").textContent = "We have emailed you a 6-digit code.";
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("verify");
  const body = formBody(form);
  try {
    await api("POST", "/api/verify-email/", { json: body });
    await api("POST", "/api/session/", { json: { email: body.email, password: body.password } });
    location.assign("/jobs/");
  } catch (error) {
    showError("verify", error);
  }
});
$("verify-resend").addEventListener("click", async () => {
  clearErrors("verify");
  $("verify-notice").textContent = "";
  try {
    const answer = await api("POST", "/api/resend-otp/", { json: { email: form.elements.email.value } });
    $("verify-notice").textContent = answer.body.message;
  } catch (error) {
    showError("verify", error);
  }
});
setState("ready");

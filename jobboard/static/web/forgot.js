// Ask for a password reset code.
import { $, api, clearErrors, setState, showError, startPage } from "./common.js";
import { formBody } from "./forms.js";

await startPage({ guests: true });
const form = $("forgot-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("forgot");
  const body = formBody(form);
  try {
    await api("POST", "/api/password/forgot/", { json: body });
    location.assign(`/reset/?email=${encodeURIComponent(body.email)}&sent=1`);
  } catch (error) {
    showError("forgot", error);
  }
});
setState("ready");

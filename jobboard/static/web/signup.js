// Sign up: the API emails a code; the next page takes it.
import { $, api, clearErrors, setState, showError, startPage } from "./common.js";
import { formBody } from "./forms.js";

await startPage({ guests: true });
const form = $("signup-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("signup");
  const body = formBody(form);
  try {
    await api("POST", "/api/register/", { json: body });
    location.assign(`/verify/?email=${encodeURIComponent(body.email)}&new=1`);
  } catch (error) {
    showError("signup", error);
  }
});
setState("ready");

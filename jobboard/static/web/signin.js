// Sign in: the API sets the session cookies; nothing here ever sees a token.
import { $, api, ApiError, clearErrors, setState, showError, startPage } from "./common.js";
import { formBody, nextPage, prefill } from "./forms.js";

await startPage({ guests: true });
const form = $("signin-form");
prefill(form, ["email"]);
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("signin");
  const body = formBody(form);
  try {
    await api("POST", "/api/session/", { json: body });
    location.assign(nextPage());
  } catch (error) {
    showError("signin", error);
    if (error instanceof ApiError && error.status === 403) {
      const verify = `/verify/?email=${encodeURIComponent(body.email || "")}`;
      $("signin-form-error").append(" ", Object.assign(document.createElement("a"), {
        href: verify,
        textContent: "Enter the code from the email",
      }));
    }
  }
});
setState("ready");

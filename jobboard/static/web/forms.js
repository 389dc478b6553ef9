// Forms whose fields are named like the API's: the values as the API wants them.

/** The form's fields as a JSON body: empty optional fields are left out. */
export function formBody(form, { keepEmpty = [] } = {}) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.type === "submit" || field.type === "button") continue;
    if ((field.type === "radio" || field.type === "checkbox") && !field.checked) continue;
    if (field.value === "" && !keepEmpty.includes(field.name)) continue;
    body[field.name] = field.value;
  }
  return body;
}

/** Where a page goes after signing in: `?next=` when it is a path of this site. */
export function nextPage(fallback = "/jobs/") {
  const next = new URLSearchParams(location.search).get("next");
  return next && next.startsWith("/") && !next.startsWith("//") ? next : fallback;
}

export function prefill(form, names) {
  const params = new URLSearchParams(location.search);
  for (const name of names) {
    const value = params.get(name);
    if (value && form.elements[name]) form.elements[name].value = value;
  }
}

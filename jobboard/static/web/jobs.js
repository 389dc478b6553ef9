// My jobs: post one (its params form generated from the kind's JSON Schema, as
// GET /api/kinds/ gives it), and the live list with filters, sorting and pages.
import {
  $,
  api,
  clearErrors,
  el,
  fillKindFilters,
  jobCard,
  liveList,
  loadKinds,
  showError,
  startPage,
} from "./common.js";

await startPage();

// --- the params form of a kind ----------------------------------------------------------

function paramField(name, schema, required) {
  const id = `post-params-${name}`;
  const label = el("label", { for: id }, schema.title || name.replace(/_/g, " "));
  const help = schema.description ? el("p", { class: "muted", id: `${id}-help` }, schema.description) : null;
  const describedBy = [help ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(" ");
  let input;
  if (Array.isArray(schema.enum)) {
    input = el("select", { id, name, "aria-describedby": describedBy, required });
    for (const value of schema.enum) input.append(el("option", { value }, value));
  } else if (schema.type === "integer" || schema.type === "number") {
    input = el("input", {
      id,
      name,
      type: "number",
      step: schema.type === "integer" ? "1" : "any",
      min: schema.minimum,
      max: schema.maximum,
      required,
      "aria-describedby": describedBy,
    });
  } else if (schema.type === "boolean") {
    input = el("input", { id, name, type: "checkbox", "aria-describedby": describedBy });
  } else {
    input = el("textarea", { id, name, required, "aria-describedby": describedBy });
  }
  input.dataset.type = schema.type || "string";
  if (schema.default !== undefined) {
    if (schema.type === "boolean") input.checked = Boolean(schema.default);
    else input.value = String(schema.default);
  }
  return [label, help, input, el("p", { class: "field-error", id: `${id}-error` })];
}

function freeFormField(kind) {
  const id = "post-params-json";
  const text = kind.runs_in_queue
    ? "Params (a JSON object)"
    : "The brief for whoever takes the job (a JSON object)";
  return [
    el("label", { for: id }, text),
    el("textarea", { id, name: "params-json", "aria-describedby": `${id}-error` }, kind.runs_in_queue ? "{}" : '{"brief": ""}'),
    el("p", { class: "field-error", id: `${id}-error` }),
  ];
}

function drawParams(kind) {
  const fieldset = $("post-params");
  const properties = (kind.params_schema && kind.params_schema.properties) || {};
  const required = new Set((kind.params_schema && kind.params_schema.required) || []);
  const names = Object.keys(properties);
  const fields = names.length
    ? names.map((name) => paramField(name, properties[name], required.has(name)))
    : [freeFormField(kind)];
  fieldset.replaceChildren(el("legend", {}, `Params of ${kind.kind}`), ...fields.flat());
  $("post-kind-help").textContent = [
    kind.description,
    kind.runs_in_queue ? `Time limit ${kind.time_limit} s per attempt.` : "Done by a person: it waits for bids.",
  ]
    .filter(Boolean)
    .join(" ");
}

function paramsOf(fieldset) {
  const json = fieldset.querySelector('[name="params-json"]');
  if (json) {
    try {
      return JSON.parse(json.value || "{}");
    } catch (error) {
      throw new Error(`The params are not valid JSON: ${error.message}`);
    }
  }
  const params = {};
  for (const input of fieldset.querySelectorAll("input, select, textarea")) {
    const type = input.dataset.type;
    if (type === "boolean") params[input.name] = input.checked;
    else if (input.value === "") continue;
    else if (type === "integer" || type === "number") params[input.name] = Number(input.value);
    else params[input.name] = input.value;
  }
  return params;
}

const kinds = await loadKinds();
const kindSelect = $("post-kind");
for (const kind of kinds) kindSelect.append(el("option", { value: kind.kind }, kind.kind));
kindSelect.value = kinds.some((kind) => kind.kind === "manual") ? "manual" : kinds[0].kind;
const drawSelected = () => drawParams(kinds.find((kind) => kind.kind === kindSelect.value));
kindSelect.addEventListener("change", drawSelected);
drawSelected();
await fillKindFilters();

const atTime = $("post-scheduled_time");
atTime.addEventListener("input", () => {
  $("post-when-at").checked = true;
});

// --- posting -------------------------------------------------------------------------------

const form = $("post-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors("post");
  $("post-notice").textContent = "";
  const body = {
    name: form.elements.name.value,
    kind: kindSelect.value,
    priority: Number(form.elements.priority.value || 0),
    max_attempts: Number(form.elements.max_attempts.value || 3),
  };
  if (form.elements.description.value) body.description = form.elements.description.value;
  if ($("post-when-at").checked) {
    if (!atTime.value) {
      $("post-scheduled_time-error").textContent = "Choose a time, or post it for now.";
      return;
    }
    // datetime-local is the browser's own time zone; the API wants an offset.
    body.scheduled_time = new Date(atTime.value).toISOString();
  }
  try {
    body.params = paramsOf($("post-params"));
  } catch (error) {
    $("post-params-error").textContent = error.message;
    return;
  }
  try {
    const answer = await api("POST", "/api/jobs/", { json: body });
    $("post-notice").replaceChildren(
      "Posted: ",
      el("a", { href: `/jobs/${answer.body.id}/` }, answer.body.name),
    );
    form.elements.name.value = "";
    list.refresh();
  } catch (error) {
    showError("post", error);
  }
});

const list = liveList("jobs", "/api/jobs/", (job) => jobCard(job));

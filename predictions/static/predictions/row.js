// The one-row form at /: its fields are made from the chosen version's input schema (a number
// input per numeric feature, a select of the known levels per categorical one, text otherwise),
// the row goes to the predict API as JSON, and the answer is shown at full precision (a JS
// number prints as the shortest text that reads back as the same double), with the raw JSON
// value in data-value. Uses $, csrfToken, parseJson and problemText from upload.js, loaded first.
"use strict";

let rowTarget = null; // {model, version, schema}: what the form was made from

document.addEventListener("DOMContentLoaded", () => {
  const form = $("row-form");
  if (!form) return; // no model registered yet
  const schemas = JSON.parse($("row-schemas").textContent);
  // upload.js's listeners run first: the version list already follows the model.
  const build = () => buildRowForm(schemas);
  $("model").addEventListener("change", build);
  $("version").addEventListener("change", build);
  build();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    scoreRow();
  });
});

function buildRowForm(schemas) {
  const model = $("model").value;
  const entry = schemas[model];
  const version = $("version").value; // "" is the default version
  const number = version || (entry && entry.default);
  const schema = entry && number ? entry.versions[number] : null;
  $("row-result").hidden = true;
  $("row-message").hidden = true;
  rowTarget = schema ? { model, version, schema } : null;
  $("row-form").hidden = !schema;
  if (!schema) return;
  $("row-version").textContent =
    `Type the ${schema.features.length} features of ${model} v${number}` +
    `${version ? "" : " (the default version)"} and score them.`;
  $("row-fields").replaceChildren(...schema.features.map(featureField));
}

function featureField(feature, index) {
  const id = `row-field-${index}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = feature.name;
  let input;
  if (Array.isArray(feature.categories) && feature.categories.length) {
    input = document.createElement("select");
    input.append(new Option("Choose…", ""));
    for (const level of feature.categories) input.append(new Option(String(level)));
  } else {
    input = document.createElement("input");
    input.type = feature.type === "number" ? "number" : "text";
    if (feature.type === "number") input.step = "any";
  }
  input.id = id;
  input.dataset.feature = feature.name;
  input.dataset.type = feature.type;
  const wrapper = document.createElement("div");
  wrapper.append(label, input);
  return wrapper;
}

// An empty field is null (the API says whether the model takes a missing value).
function fieldValue(input) {
  if (input.value === "") return null;
  if (input.dataset.type !== "number") return input.value;
  const number = Number(input.value);
  return Number.isFinite(number) ? number : input.value;
}

async function scoreRow() {
  if (!rowTarget) return;
  const { model, version, schema } = rowTarget;
  const row = {};
  for (const input of $("row-fields").querySelectorAll("[data-feature]")) {
    row[input.dataset.feature] = fieldValue(input);
  }
  // As a one-row JSON file: a session's CSRF check reads form bodies only (DRF), like upload.js.
  const data = new FormData();
  const file = new Blob([JSON.stringify({ inputs: row })], { type: "application/json" });
  data.append("file", file, "row.json");
  const asked = schema.output && schema.output.has_probabilities ? "?probabilities=true" : "";
  const url =
    `/api/v1/models/${encodeURIComponent(model)}` +
    `${version ? `/versions/${version}` : ""}/predict${asked}`;
  $("row-submit").disabled = true;
  $("row-message").hidden = true;
  let response = null;
  let answer = null;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: data,
    });
    answer = parseJson(await response.text());
  } catch {
    response = null;
  }
  $("row-submit").disabled = false;
  if (rowTarget === null || rowTarget.schema !== schema) return; // the form changed meanwhile
  if (response && response.ok && answer && "prediction" in answer) {
    showRowAnswer(answer);
  } else if (response && response.status === 422 && answer && Array.isArray(answer.errors)) {
    showRowMessage(answer.errors.map((error) => error.message).join(" "));
  } else {
    showRowMessage(problemText(response ? response.status : 0, answer));
  }
}

function showRowAnswer(answer) {
  $("row-answer-version").textContent = `${answer.model} v${answer.version}.`;
  const shown = $("row-prediction");
  shown.textContent = String(answer.prediction);
  shown.dataset.value = JSON.stringify(answer.prediction);
  const table = $("row-probabilities");
  const probabilities = Object.entries(answer.probabilities || {});
  table.tBodies[0].replaceChildren(
    ...probabilities.map(([label, probability]) => {
      const tr = document.createElement("tr");
      tr.dataset.class = label;
      const name = document.createElement("td");
      name.textContent = label;
      const value = document.createElement("td");
      value.textContent = String(probability);
      value.dataset.value = JSON.stringify(probability);
      tr.append(name, value);
      return tr;
    }),
  );
  table.hidden = probabilities.length === 0;
  $("row-result").hidden = false;
}

function showRowMessage(text) {
  $("row-result").hidden = true;
  $("row-message").textContent = text;
  $("row-message").hidden = false;
}

// The upload form at /: sends the file to the predict (or jobs) API with the session cookie
// and shows the answer. Plain JS, no build step: XHR for the upload progress, fetch for the rest.
"use strict";

const POLL_MS = 500;
const POLL_RETRY_MS = 2000;
const SHOWN_ERRORS = 10;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
let followedJob = null; // the URL of the job the card shows; a new upload replaces it

document.addEventListener("DOMContentLoaded", () => {
  const form = $("upload-form");
  if (!form) return; // no model registered yet
  setUpVersions();
  setUpDropzone();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  $("job-cancel").addEventListener("click", cancelJob);
});

function csrfToken() {
  return document.querySelector("[name=csrfmiddlewaretoken]").value;
}

// --- Form: the version list follows the chosen model; a file can be dropped or picked.

function setUpVersions() {
  const model = $("model");
  const select = $("version");
  const defaultOption = select.options[0];
  const versions = [...select.options].slice(1);
  const update = () => {
    const mine = versions.filter((option) => option.dataset.model === model.value);
    const current = mine.find((option) => "default" in option.dataset);
    defaultOption.textContent = current
      ? `Default version (v${current.value})`
      : "Default version (none yet)";
    select.replaceChildren(defaultOption, ...mine);
    select.value = "";
    const chosen = model.selectedOptions[0];
    $("model-description").textContent = [chosen.dataset.task, chosen.dataset.description]
      .filter(Boolean)
      .join(" · ");
  };
  model.addEventListener("change", update);
  update();
}

function setUpDropzone() {
  const zone = $("dropzone");
  const input = $("file");
  const showName = () => {
    const file = input.files[0];
    $("file-name").textContent = file
      ? `${file.name} (${formatBytes(file.size)})`
      : "Drop a file here, or click to choose one";
  };
  input.addEventListener("change", showName);
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showName();
    }
  });
}

// --- Upload

function submit() {
  const file = $("file").files[0];
  if (!file) {
    showMessage("Choose a file first.");
    return;
  }
  hideMessage();
  followedJob = null;
  $("result").hidden = true;
  $("job").hidden = true;

  const name = encodeURIComponent($("model").value);
  const version = $("version").value;
  const endpoint = $("as-job").checked ? "jobs" : "predict";
  const url = `/api/v1/models/${name}${version ? `/versions/${version}` : ""}/${endpoint}`;
  const data = new FormData();
  data.append("file", file);

  const xhr = new XMLHttpRequest();
  xhr.open("POST", url);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.setRequestHeader("X-CSRFToken", csrfToken());
  xhr.upload.onprogress = (event) => {
    if (event.lengthComputable) setUploadProgress(event.loaded / event.total);
  };
  xhr.upload.onload = () => {
    setUploadProgress(1);
    $("upload-percent").textContent = "done, waiting for the answer";
  };
  xhr.onload = () => {
    finishUpload();
    handleAnswer(xhr.status, parseJson(xhr.responseText));
  };
  xhr.onerror = () => {
    finishUpload();
    showMessage(problemText(0, null));
  };

  $("submit").disabled = true;
  $("upload-name").textContent = file.name;
  setUploadProgress(0);
  $("upload").hidden = false;
  xhr.send(data);
}

function setUploadProgress(fraction) {
  $("upload-progress").value = Math.round(fraction * 100);
  $("upload-percent").textContent = `${Math.round(fraction * 100)}%`;
}

function finishUpload() {
  $("upload").hidden = true;
  $("submit").disabled = false;
}

function handleAnswer(status, body) {
  if (status === 202 && body && body.url) {
    followJob(body);
  } else if ((status === 200 || status === 422) && body && Array.isArray(body.predictions)) {
    if (status === 422) showMessage(`None of the ${plural(body.rows, "row")} could be scored.`);
    showPredictions(body);
  } else if (status === 200 && body && "prediction" in body) {
    showPredictions({ ...body, predictions: [body.prediction] });
  } else {
    showProblem(status, body);
  }
}

// --- Small files: the predictions right here

function showPredictions(body) {
  const scored = body.rows - body.rows_failed;
  $("result-summary").textContent =
    `${body.model} v${body.version}: ${plural(scored, "row")} scored` +
    (body.rows_failed ? `, ${body.rows_failed} could not be scored.` : ".") +
    (body.ignored_fields && body.ignored_fields.length
      ? ` Ignored columns: ${body.ignored_fields.join(", ")}.`
      : "") +
    // Only a version opted in to an inexact path answers with this: say so beside the answers.
    (body.approximate
      ? ` Approximate answers (${body.approximate.path}, up to ` +
        `${body.approximate.max_difference.toPrecision(3)} from the model's own).`
      : "");
  showErrors($("result-errors"), body.errors.map((error) => error.message), body.rows_failed);
  const rows = body.predictions.map((prediction, row) => {
    const tr = document.createElement("tr");
    tr.append(cell(row), cell(prediction === null ? "—" : prediction));
    if (prediction === null) tr.className = "failed";
    return tr;
  });
  $("predictions").tBodies[0].replaceChildren(...rows);
  $("result").hidden = false;
}

function cell(value) {
  const td = document.createElement("td");
  td.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
  return td;
}

function showErrors(container, messages, total) {
  container.replaceChildren();
  if (!messages.length) return;
  const heading = document.createElement("h3");
  heading.textContent =
    total > messages.length
      ? `First ${messages.length} of ${plural(total, "row error")}`
      : plural(messages.length, "row error");
  const list = document.createElement("ul");
  list.className = "errors";
  for (const message of messages) {
    const item = document.createElement("li");
    item.textContent = message;
    list.append(item);
  }
  container.append(heading, list);
}

// --- Background jobs: a card that follows the job until it is done

function followJob(job) {
  followedJob = job.url;
  renderJob(job);
  $("job").hidden = false;
  if (FINISHED.has(job.status)) {
    finishJob(job);
  } else {
    setTimeout(() => pollJob(job.url), POLL_MS);
  }
}

async function pollJob(url) {
  if (followedJob !== url) return;
  let response;
  let body;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" } });
    body = parseJson(await response.text());
  } catch {
    response = null;
  }
  if (followedJob !== url) return;
  if (response && response.ok && body) {
    hideMessage();
    followJob(body);
  } else if (!response || response.status >= 500) {
    // A restart or a busy instance: say so, and keep following the job.
    showMessage("Lost contact with the server; still trying to follow the job…");
    setTimeout(() => pollJob(url), POLL_RETRY_MS);
  } else {
    showProblem(response.status, body);
  }
}

function renderJob(job) {
  const status = $("job-status");
  status.textContent = job.status;
  status.className = `status ${job.status}`;
  $("job-title").textContent = `${job.model} v${job.version} · job ${job.id}`;
  $("job-progress").value = job.progress;
  $("job-counts").textContent = jobCounts(job);
  const cancel = $("job-cancel");
  cancel.hidden = !job.links.cancel;
  cancel.disabled = false;
  cancel.dataset.url = job.links.cancel || "";
  $("job-reason").hidden = true;
  $("job-links").hidden = true;
  $("job-errors").replaceChildren();
}

function jobCounts(job) {
  if (job.status === "queued") return "Waiting for a worker…";
  if (job.status === "running" && !job.chunks_total) return "Reading the file…";
  if (!job.chunks_total && !job.rows_total) return "";
  const percent = Math.floor(job.progress * 100);
  const rows = job.rows_total
    ? `${job.rows_done.toLocaleString()} of ${plural(job.rows_total, "row")}`
    : plural(job.rows_done, "row");
  let text = `${rows} done (${percent}%), ${job.rows_failed.toLocaleString()} failed`;
  if (job.status !== "running") return text;
  text += ` · chunk ${job.chunks_done} of ${job.chunks_total}`;
  if (job.rows_per_second) text += ` · ${Math.round(job.rows_per_second).toLocaleString()} rows/s`;
  if (job.eta_seconds !== null && job.eta_seconds !== undefined) {
    text += ` · about ${formatDuration(job.eta_seconds)} left`;
  }
  return text;
}

function formatDuration(seconds) {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function finishJob(job) {
  if (job.status === "failed") {
    showJobReason(`The job failed: ${job.failure_reason || "no reason was given."}`);
  } else if (job.status === "cancelled") {
    showJobReason("The job was cancelled.");
  } else {
    $("download-csv").href = job.links.download_csv;
    $("download-parquet").href = job.links.download_parquet;
    $("download-errors").href = job.links.errors;
    $("download-errors").hidden = !job.rows_failed;
    $("job-links").hidden = false;
    if (job.rows_failed) showJobErrors(job);
  }
}

function showJobReason(text) {
  $("job-reason").textContent = text;
  $("job-reason").hidden = false;
}

async function showJobErrors(job) {
  try {
    const records = await firstCsvRecords(job.links.errors, SHOWN_ERRORS + 1);
    const column = records[0].indexOf("message");
    const messages = records.slice(1).map((record) => record[column]);
    if (followedJob === job.url) showErrors($("job-errors"), messages, job.rows_failed);
  } catch {
    if (followedJob === job.url) {
      showErrors($("job-errors"), ["The row errors could not be loaded; download them below."], 1);
    }
  }
}

async function cancelJob() {
  const url = $("job-cancel").dataset.url;
  if (!url) return;
  $("job-cancel").disabled = true;
  let response;
  let body;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
    body = parseJson(await response.text());
  } catch {
    showMessage(problemText(0, null));
    $("job-cancel").disabled = false;
    return;
  }
  if (response.ok && body) {
    followJob(body);
  } else {
    // 409: the job finished meanwhile; the next poll shows how.
    showProblem(response.status, body);
    $("job-cancel").disabled = false;
  }
}

// The first `count` records of a CSV download, reading no more of it than needed.
async function firstCsvRecords(url, count) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`status ${response.status}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    // One record more than needed, so the ones kept are complete.
    if (parseCsv(text).length > count) {
      reader.cancel();
      break;
    }
  }
  return parseCsv(text).slice(0, count);
}

function parseCsv(text) {
  const records = [];
  let record = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted) {
      if (char !== '"') field += char;
      else if (text[i + 1] === '"') field += text[i++];
      else quoted = false;
    } else if (char === '"') {
      quoted = true;
    } else if (char === ",") {
      record.push(field);
      field = "";
    } else if (char === "\n") {
      record.push(field);
      records.push(record);
      record = [];
      field = "";
    } else if (char !== "\r") {
      field += char;
    }
  }
  if (field || record.length) records.push([...record, field]);
  return records;
}

// --- Messages in words, never raw JSON or an HTML error page

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function problemText(status, body) {
  if (status === 0) return "Could not reach the server. Check your connection and try again.";
  if (status === 401) return "You are no longer logged in. Reload the page to log in again.";
  if (body && typeof body.detail === "string" && body.detail) return body.detail;
  if (status === 413) return "The file is too large to upload.";
  if (status >= 500) return `The server could not answer (error ${status}). Try again shortly.`;
  return `The request failed (error ${status}).`;
}

// A server error's detail asks to quote the request id; for the rest it is noise.
function showProblem(status, body) {
  showMessage(problemText(status, body), status >= 500 && body ? body.request_id : null);
}

function showMessage(text, requestId) {
  const box = $("message");
  box.textContent = text;
  if (requestId) {
    const id = document.createElement("span");
    id.className = "request-id";
    id.textContent = ` (request id ${requestId})`;
    box.append(id);
  }
  box.hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

function plural(count, noun) {
  return `${count.toLocaleString()} ${noun}${count === 1 ? "" : "s"}`;
}

function formatBytes(size) {
  if (size < 1024) return `${size} bytes`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}

// ffkit serve's page: plain JavaScript, no build step, talks to this server only.
// The options form is built from GET /options (the one declaration of the swap options).
"use strict";

const TOKEN_KEY = "ffkit-token";
const JOB_KEY = "ffkit-job";
const VIDEO_SUFFIXES = [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"];
const $ = (id) => document.getElementById(id);

const state = { health: null, declaration: null, urls: [], polling: null };

// ------------------------------------------------------------------ talking to the server

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class ServerError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// fetch with the token; a non-2xx answer throws ServerError carrying the server's one line
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", "Bearer " + token());
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message = body.error;
    } catch (_) { /* not JSON: keep the status line */ }
    if (response.status === 401) askToken();
    throw new ServerError(response.status, message);
  }
  return response;
}

function showMessage(text, status) {
  const el = $("message");
  el.textContent = text || "";
  el.hidden = !text;
  if (status) el.dataset.status = String(status); else delete el.dataset.status;
}

function showError(err) {
  if (err instanceof ServerError) showMessage(err.message, err.status);
  else showMessage("connection lost: " + (err && err.message ? err.message : err));
}

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

function forgetUrls() {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
}

// ------------------------------------------------------------------ the token

function askToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  $("token-panel").hidden = false;
  $("token").focus();
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) { $("token").focus(); return; }
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  $("token-panel").hidden = true;
  showMessage("");
  if (!state.declaration) loadOptions();
});

$("token-button").addEventListener("click", askToken);

// ------------------------------------------------------------------ the models panel

function modelRows(models) {
  const rows = [];
  for (const [role, described] of Object.entries(models)) {
    for (const m of Array.isArray(described) ? described : [described]) rows.push([role, m]);
  }
  return rows;
}

function modelTable(title, models) {
  const table = document.createElement("table");
  const caption = table.createCaption();
  caption.textContent = title;
  const head = table.createTHead().insertRow();
  for (const name of ["role", "file", "recipe", "variant", "provider", "sha256"]) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = name;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const [role, m] of modelRows(models)) {
    const row = body.insertRow();
    const providers = (m.providers || []).map((p) => p.replace("ExecutionProvider", "")).join(", ");
    for (const text of [role, m.file, m.recipe, m.variant, providers]) row.insertCell().textContent = text;
    const code = document.createElement("code");
    code.textContent = m.sha256 || "";
    code.title = m.sha256 || "";
    row.insertCell().appendChild(code);
  }
  return table;
}

function showModels(health) {
  const box = $("models-tables");
  box.replaceChildren(modelTable(`variant set: ${health.variant || "fp32"}`, health.models));
  if (health.compare) box.appendChild(modelTable(`compare set: ${health.compare.variant}`, health.compare.models));
  $("version").textContent = `version ${health.version}`;
}

// ------------------------------------------------------------------ the options form (from the declaration)

function label(name) { return name.replace(/_/g, " "); }

function fieldHelp(option, id) {
  const help = document.createElement("span");
  help.className = "help";
  help.id = id + "-help";
  let text = option.help;
  if (option.range) text += ` Range: ${option.range}.`;
  if (option.role && state.health && !(option.role in state.health.models)) {
    text += ` It may ask for a ${option.role} model, which this server did not load.`;
  }
  help.textContent = text + ` (${option.flag})`;
  return help;
}

function optionField(option) {
  const id = "opt-" + option.name;
  const wrap = document.createElement("div");
  wrap.dataset.option = option.name;
  wrap.dataset.media = option.media.join(" ");
  if (option.is_list && option.choices) {       // a comma list: one checkbox per allowed item
    const set = document.createElement("fieldset");
    set.id = id;
    set.setAttribute("aria-describedby", id + "-help");
    const legend = document.createElement("legend");
    legend.textContent = label(option.name);
    const choices = document.createElement("div");
    choices.className = "choices";
    const defaults = String(option.default).split(",");
    for (const choice of option.choices) {
      const item = document.createElement("span");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = `${id}-${choice}`;
      box.value = choice;
      box.checked = defaults.includes(choice);
      const text = document.createElement("label");
      text.htmlFor = box.id;
      text.textContent = choice;
      item.append(box, " ", text);
      choices.appendChild(item);
    }
    set.append(legend, choices, fieldHelp(option, id));
    wrap.appendChild(set);
    wrap.className = "field";
    return wrap;
  }
  let input;
  if (option.kind === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = option.default === true;
    wrap.className = "field check";
  } else if (option.choices) {
    input = document.createElement("select");
    if (option.optional) input.add(new Option("(none)", ""));
    for (const choice of option.choices) input.add(new Option(String(choice), String(choice)));
    input.value = option.default === null ? "" : String(option.default);
    wrap.className = "field";
  } else {
    input = document.createElement("input");
    if (option.kind === "int" || option.kind === "float") {
      input.type = "number";
      input.step = option.kind === "int" ? "1" : "any";
      input.inputMode = option.kind === "int" ? "numeric" : "decimal";
      if (option.low !== null) input.min = String(option.low);   // hints only: the server checks
      if (option.high !== null) input.max = String(option.high);
    } else {
      input.type = "text";
    }
    input.value = option.default === null ? "" : String(option.default);
    wrap.className = "field";
  }
  input.id = id;
  input.name = option.name;
  input.setAttribute("aria-describedby", id + "-help");
  const text = document.createElement("label");
  text.htmlFor = id;
  text.textContent = label(option.name);
  if (option.kind === "bool") wrap.append(input, text, fieldHelp(option, id));
  else wrap.append(text, input, fieldHelp(option, id));
  return wrap;
}

// the value a field sends ("" counts as not sent: the option's default)
function optionValue(option) {
  const id = "opt-" + option.name;
  if (option.is_list && option.choices) {
    return Array.from(document.querySelectorAll(`#${id} input:checked`)).map((b) => b.value).join(",");
  }
  const input = $(id);
  if (option.kind === "bool") return input.checked ? "true" : "false";
  return input.value.trim();
}

function buildForm(declaration) {
  const box = $("options");
  box.replaceChildren(...declaration.options.map(optionField));
  $("options-note").textContent = `(${declaration.options.length}, from ffkit swap's declaration)`;
  syncMedia();
}

async function loadOptions() {
  try {
    const response = await api("/options");
    state.declaration = await response.json();
    buildForm(state.declaration);
    resumeJob();
  } catch (err) {
    showError(err);
  }
}

// ------------------------------------------------------------------ target kind and video-only options

function isVideo(file) {
  if (!file) return false;
  if (file.type && file.type.startsWith("video/")) return true;
  const name = file.name.toLowerCase();
  return VIDEO_SUFFIXES.some((s) => name.endsWith(s));
}

function syncMedia() {
  const video = isVideo($("target").files[0]);
  const media = video ? "video" : "image";
  for (const wrap of document.querySelectorAll("#options [data-media]")) {
    const applies = wrap.dataset.media.split(" ").includes(media);
    wrap.hidden = !applies;
    for (const el of wrap.querySelectorAll("input, select")) el.disabled = !applies;
  }
  $("compare").disabled = video;
  $("submit").textContent = video ? "Start video job" : "Swap";
}

$("target").addEventListener("change", syncMedia);

// ------------------------------------------------------------------ submitting

function formData(kind) {
  const data = new FormData();
  data.append("source", $("source").files[0]);
  data.append("target", $("target").files[0]);
  if ($("reference").files[0]) data.append("reference", $("reference").files[0]);
  const fields = state.declaration.fields[kind];
  for (const option of state.declaration.options) {
    if (fields.includes(option.name)) data.append(option.name, optionValue(option));
  }
  return data;
}

function setBusy(text) {
  $("busy").textContent = text || "";
  $("submit").disabled = !!text;
}

function hideResults() {
  for (const id of ["result", "compare-result"]) $(id).hidden = true;
}

$("swap-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showMessage("");
  if (!state.declaration) { await loadOptions(); if (!state.declaration) return; }
  const source = $("source").files[0], target = $("target").files[0];
  if (!source || !target) {
    showMessage("choose a source face and a target first");
    (source ? $("target") : $("source")).focus();
    return;
  }
  hideResults();
  if (isVideo(target)) return startJob();
  if ($("compare").checked && !$("compare-field").hidden) return runCompare();
  return runSwap();
});

async function runSwap() {
  setBusy("swapping…");
  forgetUrls();
  try {
    const response = await api("/swap", { method: "POST", body: formData("image") });
    const blob = await response.blob();
    const url = objectUrl(blob), targetUrl = objectUrl($("target").files[0]);
    $("target-view").src = targetUrl;
    $("slider-under").src = targetUrl;
    $("result-image").src = url;
    $("slider-over").src = url;
    const link = $("result-download");
    link.href = url;
    link.download = "swapped" + ({ "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp",
                                  "image/bmp": ".bmp" }[blob.type] || "");
    $("result-faces").textContent = `${response.headers.get("X-Faces-Swapped")} of ` +
      `${response.headers.get("X-Faces-Detected")} faces swapped`;
    $("result").hidden = false;
    $("result-title").focus();
  } catch (err) {
    showError(err);
  } finally {
    setBusy("");
  }
}

$("slider").addEventListener("input", () => {
  $("slider-over").style.clipPath = `inset(0 ${100 - Number($("slider").value)}% 0 0)`;
});

function figureText(value) { return value === null || value === undefined ? "n/a" : String(value); }

async function runCompare() {
  setBusy("swapping on both variant sets…");
  try {
    const response = await api("/compare", { method: "POST", body: formData("image") });
    const answer = await response.json();
    $("compare-first").src = answer.first.image;
    $("compare-second").src = answer.second.image;
    $("compare-first-caption").textContent = `${answer.first.variant} (${answer.first.faces_swapped} swapped)`;
    $("compare-second-caption").textContent = `${answer.second.variant} (${answer.second.faces_swapped} swapped)`;
    const f = answer.figures, id = f.identity_cosine || {};
    const rows = [["PSNR of the two outputs (dB)", f.psnr_db], ["PSNR of the face box (dB)", f.face_psnr_db],
                  [`identity cosine to the source, ${answer.first.variant}`, id.first],
                  [`identity cosine to the source, ${answer.second.variant}`, id.second],
                  ["identity cosine between the two faces", id.between]];
    const body = $("compare-figures").tBodies[0];
    body.replaceChildren();
    for (const [name, value] of rows) {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = name;
      row.appendChild(th);
      row.insertCell().textContent = figureText(value);
    }
    $("compare-result").hidden = false;
    $("compare-title").focus();
  } catch (err) {
    showError(err);
  } finally {
    setBusy("");
  }
}

// ------------------------------------------------------------------ video jobs

async function startJob() {
  setBusy("uploading…");
  try {
    const response = await api("/jobs", { method: "POST", body: formData("video") });
    const answer = await response.json();
    sessionStorage.setItem(JOB_KEY, answer.id);
    followJob(answer.id);
    $("job-title").focus();
  } catch (err) {
    showError(err);
    setBusy("");
  }
}

function resumeJob() {
  const id = sessionStorage.getItem(JOB_KEY);
  if (id && !state.polling) followJob(id);
}

function showProgress(job) {
  const { frames_done: done, frames_total: total } = job.progress;
  const bar = $("job-progress");
  bar.max = Math.max(1, total);
  bar.value = Math.min(done, bar.max);
  const percent = total ? Math.floor((100 * done) / total) : 0;
  bar.dataset.percent = String(percent);
  $("job-status").textContent = `${job.status}: ${done} / ${total} frames (${percent}%)`;
}

function followJob(id) {
  state.polling = id;
  $("job").hidden = false;
  $("job-download").hidden = true;
  $("job-video").hidden = true;
  $("job-cancel").hidden = false;
  $("job-cancel").disabled = false;
  $("job-progress").value = 0;
  $("job-status").textContent = "queued";
  setBusy("video job running…");
  let delay = 250;
  const tick = async () => {
    if (state.polling !== id) return;
    let job;
    try {
      job = await (await api(`/jobs/${id}`)).json();
    } catch (err) {
      if (err instanceof ServerError) {      // the job is gone (expired, removed) or the token is wrong
        finishJob(id);
        showError(err);
        return;
      }
      $("job-status").textContent = "connection lost; retrying…";
      delay = Math.min(2000, delay * 2);
      setTimeout(tick, delay);
      return;
    }
    delay = 250;
    showProgress(job);
    if (job.status === "done") return jobDone(id, job);
    if (job.status === "failed" || job.status === "cancelled") {
      finishJob(id);
      showMessage(job.error || job.status);
      return;
    }
    setTimeout(tick, delay);
  };
  tick();
}

function finishJob(id) {
  if (state.polling === id) state.polling = null;
  sessionStorage.removeItem(JOB_KEY);
  $("job-cancel").hidden = true;
  setBusy("");
}

async function jobDone(id, job) {
  try {
    const response = await api(job.result);
    const blob = await response.blob();
    const url = objectUrl(blob);
    const link = $("job-download");
    link.href = url;
    const name = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "");
    link.download = name ? name[1] : "swapped.mp4";
    link.hidden = false;
    $("job-video").src = url;
    $("job-video").hidden = false;
    $("job-status").textContent += " — done";
  } catch (err) {
    showError(err);
  } finally {
    finishJob(id);
  }
}

$("job-cancel").addEventListener("click", async () => {
  const id = state.polling;
  if (!id) return;
  $("job-cancel").disabled = true;
  try {
    await api(`/jobs/${id}`, { method: "DELETE" });
    $("job-status").textContent = "cancelling…";
  } catch (err) {
    showError(err);
    $("job-cancel").disabled = false;
  }
});

// ------------------------------------------------------------------ start

async function start() {
  try {
    const response = await fetch("/health");
    state.health = await response.json();
    showModels(state.health);
    if (state.health.compare) {
      $("compare-field").hidden = false;
      $("compare-label").textContent = `Compare ${state.health.variant} with ${state.health.compare.variant} ` +
        "(both results side by side, with figures)";
    }
    if (state.health.auth && state.health.auth.token_required) {
      $("token-button").hidden = false;
      if (!token()) { askToken(); return; }
    }
  } catch (err) {
    showError(err);
  }
  loadOptions();
}

start();

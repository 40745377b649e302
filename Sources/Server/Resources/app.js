// SwiftDiffusion web page: builds a native /v1 job request, follows its Server-Sent Events and shows
// the results. Plain browser JavaScript, no build step, no external resources.
"use strict";

const TOKEN_KEY = "swiftdiffusion.token";
const TERMINAL_EVENTS = ["completed", "failed", "cancelled"];
const $ = (id) => document.getElementById(id);

// Placeholder prompts that suit the selected model: the embedded family draws shapes in named colours.
const EXAMPLE_PROMPTS = {
  embedded: "a red circle on a blue background",
  other: "a lighthouse on a cliff at sunset",
};

const state = {
  models: [],        // the /v1/models entries (each with its profile: native size, sampler, steps, cfg)
  loras: [],         // [{name, weight}]
  job: null,         // the job response of the running job
  events: null,      // its EventSource
  poll: null,        // fallback polling timer
  resultURLs: [],    // object URLs to revoke on the next run
  uploadDataURL: null,
};

// MARK: - HTTP

function token() {
  return $("token").value.trim();
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  return headers;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) message += " (set the access token at the top of the page)";
    if (response.status === 429) {
      const retry = response.headers.get("Retry-After");
      if (retry) message += ` (retry in ${retry} s)`;
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function apiJSON(path, options) {
  return (await api(path, options)).json();
}

// MARK: - Registries

function fillSelect(select, values, { selected, empty } = {}) {
  select.replaceChildren();
  if (empty !== undefined) select.append(new Option(empty, ""));
  for (const value of values) {
    const option = typeof value === "string" ? new Option(value, value) : new Option(value.label, value.value);
    select.append(option);
  }
  if (selected !== undefined && selected !== null) select.value = selected;
}

async function loadRegistries() {
  const [models, samplers, loras, controlnets, preprocessors, capabilities] = await Promise.all([
    apiJSON("v1/models"), apiJSON("v1/samplers"), apiJSON("v1/loras"), apiJSON("v1/controlnets"),
    apiJSON("v1/preprocessors"), apiJSON("v1/capabilities"),
  ]);
  state.models = models.data;
  const defaultModel = (models.data.find((m) => m.default) || models.data[0] || {}).id;
  fillSelect($("model"), models.data.map((m) => m.id), { selected: defaultModel });
  fillSelect($("sampler"), samplers.map((s) => ({ value: s.name, label: s.a1111_name ? `${s.name} (${s.a1111_name})` : s.name })),
    { empty: "(the model's own)" });
  fillSelect($("lora-select"), loras.data.map((l) => l.id));
  $("lora-add").disabled = loras.data.length === 0;
  fillSelect($("controlnet-model"), controlnets.data.map((c) => c.id), { empty: "(none)" });
  fillSelect($("controlnet-preprocessor"), preprocessors.preprocessors, { selected: "none" });
  fillSelect($("controlnet-resize-mode"), capabilities.resize_modes, { selected: "crop_and_resize" });
  const limits = capabilities.limits || {};
  for (const id of ["width", "height"]) if (limits.max_side) $(id).max = limits.max_side;
  if (limits.max_steps) $("steps").max = limits.max_steps;
  if (limits.max_images) $("count").max = limits.max_images;
  applyModelDefaults();
}

// The selected model's own settings: its native size (and the multiple sizes must be of), its recommended
// sampler, steps and CFG, from the profile in its /v1/models entry; and a placeholder prompt that suits it.
// Without a profile the fields are left empty, and the server fills in the model's settings.
function applyModelDefaults() {
  const model = state.models.find((m) => m.id === $("model").value) || {};
  $("prompt").placeholder = model.embedded ? EXAMPLE_PROMPTS.embedded : EXAMPLE_PROMPTS.other;
  const profile = model.profile;
  if (profile) {
    const multiple = profile.size_multiple || 8;
    for (const id of ["width", "height"]) {
      $(id).step = multiple;
      $(id).min = multiple;
    }
    $("width").value = profile.width;
    $("height").value = profile.height;
    $("steps").value = profile.steps;
    $("cfg").value = profile.cfg;
    const known = [...$("sampler").options].some((option) => option.value === profile.sampler);
    $("sampler").value = known ? profile.sampler : "";
    $("model-defaults").textContent =
      `${model.id}: ${profile.width}x${profile.height}, ${profile.sampler}, ${profile.steps} steps, CFG ${profile.cfg} (its own settings)`;
  } else {
    for (const id of ["width", "height", "steps", "cfg"]) $(id).value = "";
    $("sampler").value = "";
    $("model-defaults").textContent = "Empty fields take the model's own settings.";
  }
}

// MARK: - LoRAs

function renderLoRAs() {
  const list = $("lora-list");
  list.replaceChildren();
  state.loras.forEach((lora, index) => {
    const item = document.createElement("li");
    item.className = "chip";
    item.dataset.name = lora.name;
    const name = document.createElement("span");
    name.textContent = lora.name;
    const weight = document.createElement("input");
    weight.type = "number";
    weight.step = "0.05";
    weight.min = "-10";
    weight.max = "10";
    weight.value = String(lora.weight);
    weight.className = "lora-weight";
    weight.setAttribute("aria-label", `Weight of ${lora.name}`);
    weight.addEventListener("change", () => { state.loras[index].weight = Number(weight.value); });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${lora.name}`);
    remove.addEventListener("click", () => { state.loras.splice(index, 1); renderLoRAs(); });
    item.append(name, weight, remove);
    list.append(item);
  });
}

function addLoRA() {
  const name = $("lora-select").value;
  if (!name) return;
  const weight = Number($("lora-weight").value || 1);
  const existing = state.loras.find((l) => l.name === name);
  if (existing) existing.weight = weight; else state.loras.push({ name, weight });
  renderLoRAs();
}

// MARK: - Control image (drawing canvas or upload)

function setUpCanvas() {
  const canvas = $("controlnet-canvas");
  const context = canvas.getContext("2d");
  const clear = () => {
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    canvas.dataset.strokes = "0";
  };
  clear();
  let drawing = false;
  let last = null;
  const point = (event) => {
    const rect = canvas.getBoundingClientRect();
    return {
      x: (event.clientX - rect.left) * (canvas.width / rect.width),
      y: (event.clientY - rect.top) * (canvas.height / rect.height),
    };
  };
  const line = (from, to) => {
    context.strokeStyle = "#fff";
    context.fillStyle = "#fff";
    context.lineCap = "round";
    context.lineJoin = "round";
    context.lineWidth = Number($("canvas-brush").value) * (canvas.width / 512);
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
  };
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    drawing = true;
    last = point(event);
    line(last, last);
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    line(last, next);
    last = next;
  });
  const stop = () => {
    if (drawing) canvas.dataset.strokes = String(Number(canvas.dataset.strokes) + 1);
    drawing = false;
  };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("canvas-clear").addEventListener("click", clear);
}

function controlSource() {
  return $("control-source-upload").checked ? "upload" : "draw";
}

function showControlSource() {
  const upload = controlSource() === "upload";
  $("control-upload").hidden = !upload;
  $("control-draw").hidden = upload;
}

function readUpload() {
  const file = $("controlnet-upload").files[0];
  state.uploadDataURL = null;
  $("controlnet-upload-preview").hidden = true;
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    state.uploadDataURL = reader.result;
    $("controlnet-upload-preview").src = reader.result;
    $("controlnet-upload-preview").hidden = false;
  };
  reader.readAsDataURL(file);
}

// The control image as a PNG/JPEG data URL: the canvas drawing or the uploaded file.
function controlImage() {
  if (controlSource() === "upload") {
    if (!state.uploadDataURL) throw new Error("choose a control image to upload, or draw one");
    return state.uploadDataURL;
  }
  return $("controlnet-canvas").toDataURL("image/png");
}

// MARK: - Request

function numberField(id) {
  const text = $(id).value.trim();
  return text === "" ? undefined : Number(text);
}

function buildRequest() {
  const prompt = $("prompt").value.trim();
  const controlModel = $("controlnet-model").value;
  if (!prompt && !controlModel) throw new Error("enter a prompt");
  const request = {
    model: $("model").value || undefined,
    prompt,
    negative_prompt: $("negative-prompt").value.trim() || undefined,
    width: numberField("width"),
    height: numberField("height"),
    steps: numberField("steps"),
    sampler: $("sampler").value || undefined,
    cfg: numberField("cfg"),
    seed: numberField("seed"),
    n: numberField("count"),
  };
  if (state.loras.length) request.loras = state.loras.map((l) => ({ name: l.name, weight: l.weight }));
  if (controlModel) {
    request.controls = [{
      model: controlModel,
      image: controlImage(),
      preprocessor: $("controlnet-preprocessor").value || "none",
      resize_mode: $("controlnet-resize-mode").value || undefined,
      weight: numberField("controlnet-weight"),
      start: numberField("controlnet-start"),
      end: numberField("controlnet-end"),
    }];
  }
  return JSON.parse(JSON.stringify(request)); // drops the undefined fields
}

// MARK: - Job progress

function setStatus(status, text) {
  const element = $("job-status");
  element.dataset.status = status;
  element.textContent = text || status[0].toUpperCase() + status.slice(1);
}

function showError(message) {
  $("error-message").textContent = message;
  $("error-message").hidden = !message;
}

function setProgress(step, total, stage, eta) {
  const progress = $("progress");
  if (total > 0) {
    progress.max = total;
    progress.value = Math.min(step, total);
  }
  progress.dataset.updates = String(Number(progress.dataset.updates || 0) + 1);
  $("progress-text").textContent = `${step}/${total}`;
  if (stage !== undefined) $("progress-stage").textContent = stage ? `· ${stage}` : "";
  $("progress-eta").textContent = eta !== undefined && eta !== null ? `· ETA ${formatSeconds(eta)}` : "";
}

function formatSeconds(seconds) {
  if (seconds < 1) return "<1 s";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function handleEvent(event) {
  switch (event.type) {
    case "queued":
      setStatus("queued", event.queue_position ? `Queued (position ${event.queue_position})` : "Queued");
      break;
    case "started":
    case "stage":
    case "step":
      setStatus("running", "Running");
      setProgress(event.step || 0, event.total || 0, event.stage, event.eta_seconds);
      break;
    case "completed":
    case "failed":
    case "cancelled":
      finish();
      break;
  }
}

function follow(job) {
  const url = new URL(job.links.events, location.href);
  if (token()) url.searchParams.set("access_token", token()); // EventSource cannot send headers
  const source = new EventSource(url);
  state.events = source;
  for (const type of ["queued", "started", "stage", "step", ...TERMINAL_EVENTS]) {
    source.addEventListener(type, (message) => {
      try { handleEvent(JSON.parse(message.data)); } catch (error) { console.error(error); }
    });
  }
  source.onerror = () => {
    // The stream ended or broke before a terminal event: fall back to polling the job.
    if (state.events !== source) return;
    source.close();
    state.events = null;
    if (!state.poll) state.poll = setInterval(poll, 500);
  };
}

async function poll() {
  if (!state.job) return;
  try {
    const job = await apiJSON(state.job.links.self);
    const { step, total, stage } = job.progress;
    if (job.status === "running") setProgress(step, total, stage);
    if (["succeeded", "failed", "cancelled"].includes(job.status)) finish();
  } catch (error) {
    showError(error.message);
  }
}

function stopFollowing() {
  if (state.events) state.events.close();
  state.events = null;
  if (state.poll) clearInterval(state.poll);
  state.poll = null;
}

async function finish() {
  stopFollowing();
  const current = state.job;
  if (!current) return;
  state.job = null;
  try {
    const job = await apiJSON(current.links.self);
    $("generate").disabled = false;
    $("cancel").disabled = true;
    setStatus(job.status, job.status === "succeeded" ? "Succeeded" : job.status === "failed" ? "Failed" : "Cancelled");
    if (job.error) showError(job.error);
    if (job.status === "succeeded") {
      setProgress(job.progress.total || job.request.steps, job.progress.total || job.request.steps, "done");
      await showResults(job);
    }
  } catch (error) {
    $("generate").disabled = false;
    $("cancel").disabled = true;
    setStatus("failed", "Failed");
    showError(error.message);
  }
}

async function showResults(job) {
  const results = $("results");
  for (const result of job.results) {
    // Fetched rather than linked so that the Authorization header goes along.
    const blob = await (await api(result.url)).blob();
    const url = URL.createObjectURL(blob);
    state.resultURLs.push(url);
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.className = "result-image";
    image.alt = `Result ${result.index + 1}: ${job.request.prompt}`;
    image.addEventListener("load", () => image.classList.toggle("small", image.naturalWidth < 256));
    image.src = url;
    const caption = document.createElement("figcaption");
    const link = document.createElement("a");
    link.href = url;
    link.download = `swiftdiffusion-${job.id}-${result.index}.png`;
    link.textContent = `Download · seed ${job.request.seed}`;
    caption.append(link);
    figure.append(image, caption);
    results.append(figure);
  }
  if (job.infotext) {
    $("infotext").textContent = job.infotext;
    $("infotext-panel").hidden = false;
  }
}

async function generate(event) {
  event.preventDefault();
  showError("");
  let request;
  try {
    request = buildRequest();
  } catch (error) {
    showError(error.message);
    return;
  }
  stopFollowing();
  for (const url of state.resultURLs) URL.revokeObjectURL(url);
  state.resultURLs = [];
  $("results").replaceChildren();
  $("infotext-panel").hidden = true;
  $("progress").dataset.updates = "0";
  setProgress(0, request.steps || 0, "");
  $("generate").disabled = true;
  setStatus("submitting", "Submitting…");
  try {
    const job = await apiJSON("v1/images/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    state.job = job;
    $("job-id").textContent = job.id;
    $("job-id").dataset.id = job.id;
    $("cancel").disabled = false;
    setStatus("queued", "Queued");
    follow(job);
  } catch (error) {
    $("generate").disabled = false;
    setStatus("failed", "Not submitted");
    showError(error.message);
  }
}

async function cancel() {
  if (!state.job) return;
  $("cancel").disabled = true;
  setStatus("cancelling", "Cancelling…");
  try {
    await api(state.job.links.cancel, { method: "POST" });
  } catch (error) {
    showError(error.message);
  }
}

// MARK: - Start

async function start() {
  $("token").value = localStorage.getItem(TOKEN_KEY) || "";
  $("token").addEventListener("change", () => {
    const value = token();
    if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
    load();
  });
  $("lora-add").addEventListener("click", addLoRA);
  $("model").addEventListener("change", applyModelDefaults);
  for (const radio of document.querySelectorAll('input[name="control-source"]')) radio.addEventListener("change", showControlSource);
  $("controlnet-upload").addEventListener("change", readUpload);
  $("generate-form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  setUpCanvas();
  showControlSource();
  await load();
}

async function load() {
  document.body.dataset.ready = "false";
  showError("");
  try {
    await loadRegistries();
    document.body.dataset.ready = "true";
  } catch (error) {
    showError(`Could not load the model lists: ${error.message}`);
    if (error.status === 401) $("token-panel").open = true;
    document.body.dataset.ready = "error";
  }
}

document.addEventListener("DOMContentLoaded", start);

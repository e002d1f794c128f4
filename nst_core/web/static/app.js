// The page: builds its form from /api/options, submits a job, follows it through server-sent
// events, shows the picture being painted, cancels, and offers the result. Plain JS, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { schema: null, content: null, styles: [], job: null, events: null };
const TERMINAL = ["done", "failed", "cancelled"];
const JOB_KEY = "nst-job";  // a reload reconnects to the job (before the server gives up on it)

async function api(path, init) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, init || {}));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401 || response.status === 403) $("token-box").hidden = false;
  if (!response.ok) {
    const error = (body && body.error) || { message: `the server answered ${response.status}` };
    throw Object.assign(new Error(error.message), { field: error.field, status: response.status });
  }
  return body;
}

// -- the access token (servers on other addresses need one) --------------------------------------

async function useToken(token) {
  await api("/api/session", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  $("token-box").hidden = true;
}

async function tokenFromAddress() {
  const m = location.hash.match(/token=([^&]+)/);
  if (!m) return;
  history.replaceState(null, "", location.pathname);  // out of the address bar and history
  try { await useToken(decodeURIComponent(m[1])); } catch (e) { showError(e); }
}

// -- the form, from the options' schema ------------------------------------------------------------

function label(name) { return name.replace(/_/g, " "); }

function inputFor(opt) {
  let input;
  if (opt.choices) {
    input = document.createElement("select");
    const choices = opt.nullable ? [""].concat(opt.choices) : opt.choices;
    for (const c of choices) {
      const o = document.createElement("option");
      o.value = c;
      o.textContent = c === "" ? "(preset)" : (opt.name === "preset" && state.schema.presets[c]
        ? `${c} — ${state.schema.presets[c]}` : c);
      input.appendChild(o);
    }
    input.value = opt.default === null ? "" : String(opt.default);
  } else if (opt.type === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = !!opt.default;
  } else if ((opt.type === "int" || opt.type === "float") && !opt.null_word) {
    input = document.createElement("input");
    input.type = "number";
    if (opt.min !== undefined) input.min = opt.exclusive ? "" : opt.min;
    if (opt.max !== undefined) input.max = opt.max;
    input.step = opt.step || (opt.type === "int" ? 1 : "any");
    input.value = opt.default === null ? "" : opt.default;
    if (opt.default === null) input.placeholder = "preset / default";
  } else {
    input = document.createElement("input");
    input.type = "text";
    const value = opt.default === null ? (opt.null_word || "") : opt.default;
    input.value = Array.isArray(value) ? value.join(", ") : value;
    if (opt.type === "list") input.placeholder = "comma-separated";
  }
  input.id = `opt-${opt.name}`;
  input.dataset.name = opt.name;
  return input;
}

function buildForm(schema) {
  state.schema = schema;
  const main = $("options-main");
  const more = document.querySelector("#options-more .grid");
  const byName = Object.fromEntries(schema.options.map((o) => [o.name, o]));
  const order = schema.main.map((n) => byName[n]).concat(schema.options.filter((o) => !o.main));
  for (const opt of order) {
    const field = document.createElement("label");
    field.className = "field";
    field.title = opt.help;
    field.id = `field-${opt.name}`;
    if (opt.name === "preset" || opt.type === "list") field.classList.add("wide");
    const name = document.createElement("span");
    name.textContent = label(opt.name);
    field.append(name, inputFor(opt));
    (opt.main ? main : more).appendChild(field);
  }
  const box = $("builtin-styles");
  for (const s of schema.styles) {
    const l = document.createElement("label");
    l.title = s.name;
    const c = document.createElement("input");
    c.type = "checkbox";
    c.name = "builtin";
    c.value = s.id;
    const img = document.createElement("img");
    img.src = `/api/styles/${s.id}`;
    img.alt = s.name;
    const t = document.createElement("span");
    t.textContent = s.name;
    l.append(c, img, t);
    box.appendChild(l);
  }
}

function readOption(opt, input) {
  // The option's value, or undefined where it is the default (nothing is sent).
  let v;
  if (opt.type === "bool") v = input.checked;
  else if (opt.choices) v = input.value === "" ? null : input.value;
  else {
    const text = input.value.trim();
    if (text === "" || (opt.null_word && text.toLowerCase() === opt.null_word)) v = null;
    else if (opt.type === "list") {
      v = text.split(/[\s,]+/).filter(Boolean).map((x) => (opt.item === "str" ? x : Number(x)));
    } else if (opt.type === "int" || opt.type === "float") {
      v = Number(text);
      if (!Number.isFinite(v)) v = text;  // the server names the option in its error
    } else v = text;
  }
  if (v === null && !opt.nullable) return undefined;
  return JSON.stringify(v) === JSON.stringify(opt.default) ? undefined : v;
}

function collectOptions() {
  const out = {};
  for (const opt of state.schema.options) {
    const v = readOption(opt, $(`opt-${opt.name}`));
    if (v !== undefined) out[opt.name] = v;
  }
  return out;
}

// -- pictures: pickers and drag and drop ------------------------------------------------------------

function setContent(file) {
  state.content = file;
  const img = $("content-thumb");
  img.src = URL.createObjectURL(file);
  img.hidden = false;
  document.querySelector("#content-drop .drop-text").textContent = file.name;
}

function addStyles(files) {
  for (const f of files) state.styles.push(f);
  renderStyles();
}

function renderStyles() {
  const list = $("style-list");
  list.textContent = "";
  state.styles.forEach((f, i) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = URL.createObjectURL(f);
    img.alt = img.title = f.name;
    const x = document.createElement("button");
    x.type = "button";
    x.textContent = "×";
    x.title = "remove";
    x.onclick = () => { state.styles.splice(i, 1); renderStyles(); };
    li.append(img, x);
    list.appendChild(li);
  });
}

function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const files = [...e.dataTransfer.files].filter((f) => f.type.startsWith("image/") || !f.type);
    if (files.length) onFiles(files);
  });
}

// -- the job -----------------------------------------------------------------------------------------

function showError(e) {
  const box = $("error");
  box.textContent = e.message;
  box.hidden = false;
  document.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
  if (e.field && $(`field-${e.field}`)) {
    const field = $(`field-${e.field}`);
    field.classList.add("invalid");
    if (field.closest("details")) field.closest("details").open = true;
  }
}

function clearError() {
  $("error").hidden = true;
  document.querySelectorAll(".field.invalid").forEach((f) => f.classList.remove("invalid"));
}

function liveSize() {
  // The live picture need not be larger than the result.
  const live = state.schema.live;
  const size = Number($("opt-size").value);
  return Number.isFinite(size) && size > 0 ? Math.max(live.min, Math.min(live.size, size)) : live.size;
}

async function start() {
  clearError();
  const form = new FormData();
  if (state.content) form.append("content", state.content, state.content.name);
  for (const f of state.styles) form.append("style", f, f.name);
  document.querySelectorAll("input[name=builtin]:checked").forEach((c) => form.append("builtin", c.value));
  form.append("options", JSON.stringify(collectOptions()));
  form.append("live", $("live").checked ? String(liveSize()) : "0");
  $("start").disabled = true;
  try {
    const job = await api("/api/jobs", { method: "POST", body: form });
    follow(job);
  } catch (e) {
    showError(e);
    $("start").disabled = false;
  }
}

function follow(job) {
  state.job = job;
  sessionStorage.setItem(JOB_KEY, job.id);
  $("download").hidden = true;
  $("live-image").hidden = true;
  $("live-image").dataset.images = "0";
  $("cancel").disabled = false;
  $("start").disabled = true;
  render(job);
  if (state.events) state.events.close();
  const events = new EventSource(job.urls.events);
  state.events = events;
  events.addEventListener("state", (e) => {
    const snap = JSON.parse(e.data);
    render(snap);
    if (TERMINAL.includes(snap.status)) events.close();  // or EventSource would reconnect
  });
}

function clock(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
    : `${m}:${String(s % 60).padStart(2, "0")}`;
}

const PHASES = { loading: "Loading the network", stylizing: "Painting", finishing: "Finishing" };

function render(job) {
  state.job = Object.assign(state.job || {}, job);
  const p = job.progress || {};
  $("progress").value = job.fraction || 0;
  $("progress").dataset.fraction = job.fraction || 0;
  document.body.dataset.status = job.status;
  let status = "", stage = "", eta = "";
  if (job.status === "queued") {
    status = `Waiting: ${job.position} job${job.position === 1 ? "" : "s"} ahead`;
  } else if (job.status === "running") {
    status = PHASES[p.phase] || "Starting";
    if (p.phase === "stylizing" && p.iterations) {
      stage = `scale ${p.scale}/${p.scales}, iteration ${p.iteration}/${p.iterations}`;
    }
    if (p.eta_s !== null && p.eta_s !== undefined) eta = `about ${clock(p.eta_s)} left`;
  } else if (job.status === "done") {
    status = "Done";
    const r = job.result;
    stage = r ? `${r.width}×${r.height}, ${r.bits}-bit PNG` : "";
  } else if (job.status === "failed") {
    status = "Failed";
    showError(job.error || { message: "the job failed" });
  } else if (job.status === "cancelled") {
    status = "Cancelled";
    stage = job.error ? job.error.message : "";
  }
  $("status").textContent = status;
  $("stage").textContent = stage;
  $("eta").textContent = eta;
  const img = $("live-image");
  if (job.images && String(job.images) !== img.dataset.images) {
    img.dataset.images = String(job.images);
    img.src = `${job.urls ? job.urls.image : `/api/jobs/${job.id}/image`}?n=${job.images}`;
    img.hidden = false;
    $("caption").textContent = job.status !== "done"
      ? "being painted (the full-size result follows)" : "";
  }
  if (TERMINAL.includes(job.status)) {
    $("cancel").disabled = true;
    $("start").disabled = false;
    sessionStorage.removeItem(JOB_KEY);
  }
  if (job.status === "done") {
    const url = `/api/jobs/${job.id}/result`;
    img.src = url;
    img.hidden = false;
    $("caption").textContent = "the result";
    const a = $("download");
    a.href = url;
    a.download = (job.result && job.result.filename) || "result.png";
    a.hidden = false;
  }
}

async function cancel() {
  if (!state.job) return;
  $("cancel").disabled = true;
  try { render(await api(`/api/jobs/${state.job.id}/cancel`, { method: "POST" })); }
  catch (e) { showError(e); }
}

async function main() {
  await tokenFromAddress();
  window.addEventListener("hashchange", tokenFromAddress);  // a link pasted into an open page
  $("content-input").addEventListener("change", (e) => { if (e.target.files[0]) setContent(e.target.files[0]); });
  $("style-input").addEventListener("change", (e) => { addStyles([...e.target.files]); e.target.value = ""; });
  dropZone($("content-drop"), (files) => setContent(files[0]));
  dropZone($("style-drop"), addStyles);
  $("start").addEventListener("click", start);
  $("cancel").addEventListener("click", cancel);
  $("token-save").addEventListener("click", async () => {
    try { await useToken($("token-input").value.trim()); clearError(); } catch (e) { showError(e); }
  });
  try {
    const schema = await api("/api/options");
    buildForm(schema);
    if (schema.token.required && !schema.token.accepted) $("token-box").hidden = false;
  } catch (e) { showError(e); return; }
  const previous = sessionStorage.getItem(JOB_KEY);
  if (previous) {
    try { follow(await api(`/api/jobs/${previous}`)); } catch (e) { sessionStorage.removeItem(JOB_KEY); }
  }
  document.body.dataset.ready = "1";
}

main();

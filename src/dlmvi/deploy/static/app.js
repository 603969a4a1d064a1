// dlmvi serve: the radiologist's page. Plain JavaScript, no build step, nothing from the internet.
// Step 1 uploads the patient (POST /api/uploads); when every sequence has its tumour mask the
// prediction follows at once, otherwise step 2 shows a viewer to draw the tumour box on
// n consecutive slices of each sequence, then POST /api/uploads/{id}/predict.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, upload: null, seq: null, volumes: {}, boxes: {}, view: {}, drag: null, urls: [] };

// ---- access token: from the address's #token=... (never sent in a URL) --------------------
(function keepToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(window.location.hash || "");
  if (m) {
    sessionStorage.setItem("dlmvi-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", window.location.pathname);
  }
})();

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  const t = sessionStorage.getItem("dlmvi-token");
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = authHeaders(opts.headers);
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (err) {
    throw new Error("the server cannot be reached (" + err.message + "); is `dlmvi serve` still running?");
  }
  if (!resp.ok) {
    let detail = resp.status + " " + resp.statusText;
    try {
      const body = await resp.json();
      if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (e) { /* not JSON */ }
    const error = new Error(detail);
    error.status = resp.status;
    throw error;
  }
  return resp;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text) { $("status").textContent = text || ""; }

function fmt(v, d) { return Number(v).toFixed(d === undefined ? 3 : d); }
function pct(v) { return (100 * v).toFixed(1) + " %"; }

// ---- model card -----------------------------------------------------------------------------
async function loadModel() {
  try {
    const m = await (await api("/api/model")).json();
    state.model = m;
    const td = m.training_data || {};
    $("site").textContent = m.site ? m.site + " \u00b7" : "";
    $("model-line").textContent = "model: " + m.sequences.join(", ") + "; trained on " + (td.n || "?") +
      " patients; decision threshold " + pct(m.thresholds.risk_threshold) + " nomogram risk";
    document.querySelectorAll(".expected-files").forEach((el) => {
      el.textContent = m.sequences.map((s) => s + ".nii.gz, " + s + "_roi.nii.gz").join(", ");
    });
    document.querySelectorAll(".n-slices").forEach((el) => { el.textContent = m.n_slices; });
    if (m.pacs) { $("worklist-pacs").textContent = m.pacs; $("worklist-section").hidden = false; loadWorklist(); }
    if (m.synthetic) {
      const b = $("synthetic-banner");
      b.textContent = (m.synthetic_notice || "SYNTHETIC") + " This model was trained on synthetic phantom data; its output says nothing about a real patient.";
      b.hidden = false;
    }
  } catch (err) {
    $("model-line").textContent = "";
    showError(err.message);
  }
}

// ---- the PACS worklist ----------------------------------------------------------------------
async function loadWorklist() {
  $("worklist-status").textContent = "loading the worklist\u2026";
  try {
    const w = await (await api("/api/worklist")).json();
    const body = $("worklist-table").querySelector("tbody");
    body.textContent = "";
    w.studies.forEach((st) => {
      const tr = document.createElement("tr");
      tr.id = "study-" + st.study;
      const series = st.series.map((se) => se.modality + " " + se.description).join("; ");
      [st.study, st.date, st.description, series, st.has_roi ? "yes" : "no"].forEach((v) => {
        const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
      });
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button"; b.textContent = "Open"; b.id = "open-" + st.study;
      b.addEventListener("click", () => onOpenStudy(st));
      td.appendChild(b); tr.appendChild(td); body.appendChild(tr);
    });
    $("worklist-status").textContent = w.studies.length + " studies";
  } catch (err) {
    $("worklist-status").textContent = "";
    showError(err.message);
  }
}

async function onOpenStudy(st) {
  showError("");
  const afp = $("worklist-afp").value.trim();
  if (afp === "" || !(Number(afp) >= 0)) { showError("Enter AFP in ng/mL (a number, 0 or more) above the worklist."); return; }
  setStatus("retrieving study " + st.study + " from the PACS\u2026");
  try {
    const up = await (await api("/api/worklist/open", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ study_uid: st.study_uid }),
    })).json();
    state.upload = up;
    state.afp = Number(afp);
    state.openStudy = st;
    if (up.needs_boxes.length === 0) { await predict({}); } else { await startViewer(up); }
  } catch (err) {
    showError(err.message);
    setStatus("");
  }
}

async function onSendSr() {
  const rid = state.reportId;
  if (!rid) return;
  $("send-sr").disabled = true;
  $("send-sr-status").textContent = "sending\u2026";
  try {
    const r = await (await api("/api/reports/" + rid + "/store", { method: "POST" })).json();
    state.reportId = null;
    $("send-sr-status").textContent = "stored in the study on PACS " + r.pacs + " (" + r.series_description + ")";
  } catch (err) {
    $("send-sr").disabled = false;
    $("send-sr-status").textContent = "";
    showError(err.message);
  }
}

// ---- step 1: upload -----------------------------------------------------------------------
async function onSubmit(event) {
  event.preventDefault();
  showError("");
  const archive = $("archive").files[0];
  const files = Array.from($("files").files);
  const afp = $("afp").value.trim();
  if (!archive && files.length === 0) { showError("Choose the patient's archive or the sequence files."); return; }
  if (archive && files.length) { showError("Choose either an archive or the sequence files, not both."); return; }
  if (afp === "" || !(Number(afp) >= 0)) { showError("Enter AFP in ng/mL (a number, 0 or more)."); return; }
  const limit = state.model && state.model.max_upload_bytes;
  const size = (archive ? [archive] : files).reduce((a, f) => a + f.size, 0);
  if (limit && size > limit) {
    showError("The upload (" + (size / 1048576).toFixed(1) + " MB) is larger than this server's limit of " +
      (limit / 1048576).toFixed(0) + " MB; send only the model's sequences and their masks, or restart the server with a larger --max-upload-mb.");
    return;
  }
  state.openStudy = null;
  const form = new FormData();
  if (archive) form.append("archive", archive, "upload");
  files.forEach((f) => form.append("files", f, f.name));
  const pid = $("patient-id").value.trim();
  if (pid) form.append("patient_id", pid);
  $("submit").disabled = true;
  setStatus("uploading\u2026");
  try {
    const up = await (await api("/api/uploads", { method: "POST", body: form })).json();
    state.upload = up;
    state.afp = Number(afp);
    if (up.needs_boxes.length === 0) {
      await predict({});
    } else {
      await startViewer(up);
    }
  } catch (err) {
    showError(err.message);
    setStatus("");
  } finally {
    $("submit").disabled = false;
  }
}

// ---- step 2: the viewer -------------------------------------------------------------------
async function startViewer(up) {
  setStatus("loading the images\u2026");
  state.volumes = {};
  state.boxes = {};
  state.view = {};
  for (const seq of up.needs_boxes) {
    const info = up.sequences[seq];
    const buf = await (await api("/api/uploads/" + up.upload_id + "/volumes/" + seq)).arrayBuffer();
    state.volumes[seq] = { data: new Uint16Array(buf), info: info };
    state.boxes[seq] = {};
    const [lo, hi] = info.window;
    state.view[seq] = { slice: Math.floor(info.shape[0] / 2), window: hi - lo, level: (hi + lo) / 2 };
  }
  $("needs-boxes").textContent = up.needs_boxes.join(", ");
  const tabs = $("seq-tabs");
  tabs.textContent = "";
  up.needs_boxes.forEach((seq) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = seq;
    b.dataset.seq = seq;
    b.id = "tab-" + seq;
    b.addEventListener("click", () => selectSequence(seq));
    tabs.appendChild(b);
  });
  $("viewer-section").hidden = false;
  setStatus("draw the boxes below");
  selectSequence(up.needs_boxes[0]);
}

function selectSequence(seq) {
  state.seq = seq;
  const vol = state.volumes[seq];
  const [nz, ny, nx] = vol.info.shape;
  const canvas = $("canvas");
  canvas.width = nx;
  canvas.height = ny;
  const [sx, sy] = vol.info.spacing;
  canvas.style.height = (512 * (ny * sy) / (nx * sx)).toFixed(1) + "px";
  const range = vol.info.scale * 65535;
  const sl = $("slice");
  sl.max = nz - 1;
  for (const id of ["window", "level"]) {
    const el = $(id);
    el.min = id === "window" ? Math.max(range / 1000, 1e-6) : vol.info.offset;
    el.max = id === "window" ? range : vol.info.offset + range;
    el.step = range / 1000 || 1;
  }
  document.querySelectorAll("#seq-tabs button").forEach((b) => b.classList.toggle("active", b.dataset.seq === seq));
  syncControls();
  draw();
}

function syncControls() {
  const v = state.view[state.seq];
  $("slice").value = v.slice;
  $("window").value = v.window;
  $("level").value = v.level;
  $("slice-label").textContent = v.slice + " / " + (state.volumes[state.seq].info.shape[0] - 1);
  $("window-label").textContent = fmt(v.window, 1);
  $("level-label").textContent = fmt(v.level, 1);
}

function draw() {
  const seq = state.seq;
  const vol = state.volumes[seq];
  const v = state.view[seq];
  const [, ny, nx] = vol.info.shape;
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(nx, ny);
  const base = v.slice * nx * ny;
  const lo = v.level - v.window / 2;
  const k = 255 / Math.max(v.window, 1e-12);
  const { offset, scale } = vol.info;
  for (let i = 0; i < nx * ny; i++) {
    const val = offset + scale * vol.data[base + i];
    const g = Math.max(0, Math.min(255, (val - lo) * k));
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = g;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  ctx.lineWidth = Math.max(1, nx / 512);
  for (const dz of [-1, 1]) {  // neighbours' boxes as a guide
    const b = state.boxes[seq][v.slice + dz];
    if (b) { ctx.setLineDash([3, 3]); ctx.strokeStyle = "#ffd54f"; ctx.strokeRect(b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1); }
  }
  ctx.setLineDash([]);
  const box = state.drag ? state.drag.box : state.boxes[seq][v.slice];
  if (box) { ctx.strokeStyle = "#00e676"; ctx.strokeRect(box[0], box[1], box[2] - box[0] + 1, box[3] - box[1] + 1); }
  renderBoxes();
}

function voxelAt(event) {
  const canvas = $("canvas");
  const r = canvas.getBoundingClientRect();
  const x = Math.floor((event.clientX - r.left) * canvas.width / r.width);
  const y = Math.floor((event.clientY - r.top) * canvas.height / r.height);
  return [Math.max(0, Math.min(canvas.width - 1, x)), Math.max(0, Math.min(canvas.height - 1, y))];
}

function onMouseDown(event) {
  if (!state.seq) return;
  event.preventDefault();
  const p = voxelAt(event);
  if (event.button === 2) {
    const v = state.view[state.seq];
    state.drag = { wl: true, x: event.clientX, y: event.clientY, window: v.window, level: v.level };
  } else if (event.button === 0) {
    state.drag = { start: p, box: [p[0], p[1], p[0], p[1]] };
  }
}

function onMouseMove(event) {
  const d = state.drag;
  if (!d) return;
  if (d.wl) {
    const v = state.view[state.seq];
    const range = state.volumes[state.seq].info.scale * 65535;
    v.window = Math.max(range / 1000, d.window + (event.clientX - d.x) * range / 500);
    v.level = d.level - (event.clientY - d.y) * range / 500;
    syncControls();
  } else {
    const p = voxelAt(event);
    d.box = [Math.min(d.start[0], p[0]), Math.min(d.start[1], p[1]), Math.max(d.start[0], p[0]), Math.max(d.start[1], p[1])];
  }
  draw();
}

function onMouseUp() {
  const d = state.drag;
  state.drag = null;
  if (d && !d.wl && d.box[2] > d.box[0] && d.box[3] > d.box[1]) {
    state.boxes[state.seq][state.view[state.seq].slice] = d.box;
  }
  if (d) draw();
}

function onWheel(event) {
  if (!state.seq) return;
  event.preventDefault();
  setSlice(state.view[state.seq].slice + (event.deltaY > 0 ? 1 : -1));
}

function setSlice(z) {
  const v = state.view[state.seq];
  const nz = state.volumes[state.seq].info.shape[0];
  v.slice = Math.max(0, Math.min(nz - 1, Math.round(z)));
  syncControls();
  draw();
}

function boxedSlices(seq) {
  return Object.keys(state.boxes[seq]).map(Number).sort((a, b) => a - b);
}

function boxesProblem() {
  const n = state.upload.n_slices;
  for (const seq of state.upload.needs_boxes) {
    const s = boxedSlices(seq);
    if (s.length !== n) return seq + ": " + s.length + " of " + n + " slices boxed";
    for (let i = 1; i < s.length; i++) {
      if (s[i] !== s[0] + i) return seq + ": the boxed slices (" + s.join(", ") + ") are not consecutive";
    }
  }
  return "";
}

function renderBoxes() {
  const body = document.querySelector("#boxes-table tbody");
  body.textContent = "";
  for (const seq of state.upload.needs_boxes) {
    for (const z of boxedSlices(seq)) {
      const tr = document.createElement("tr");
      for (const v of [seq, z, ...state.boxes[seq][z]]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    const tab = $("tab-" + seq);
    if (tab) tab.classList.toggle("done", boxedSlices(seq).length === state.upload.n_slices);
  }
  const problem = boxesProblem();
  $("predict-boxes").disabled = Boolean(problem);
  $("boxes-status").textContent = problem ? "To predict: " + problem + "." : "Ready: every sequence has its boxes.";
}

async function onPredictBoxes() {
  const problem = boxesProblem();
  if (problem) { showError(problem); return; }
  const boxes = {};
  for (const seq of state.upload.needs_boxes) {
    boxes[seq] = boxedSlices(seq).map((z) => [z, ...state.boxes[seq][z]]);
  }
  $("predict-boxes").disabled = true;
  try {
    await predict(boxes);
    $("viewer-section").hidden = true;
  } catch (err) {
    showError(err.message);
  } finally {
    $("predict-boxes").disabled = Boolean(boxesProblem());
  }
}

// ---- prediction and result ------------------------------------------------------------------
async function predict(boxes) {
  // the answer first (probability, nomogram risk, decision), then the spread and the card
  setStatus("predicting\u2026");
  showError("");
  const up = state.upload;
  const t0 = performance.now();
  const resp = await api("/api/uploads/" + up.upload_id + "/predict/first", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ afp: state.afp, boxes: boxes }),
  });
  const first = await resp.json();
  state.upload = null;
  showFirst(first.first, performance.now() - t0);
  setStatus("computing the spread and the Grad-CAM\u2026");
  let out = null;
  while (out === null) {
    const r = await api(first.followup_url + "?wait=30");
    if (r.status === 200) out = await r.json();
  }
  showResult(out);
  $("result-section").dataset.fullMs = String(Math.round(performance.now() - t0));
  setStatus("done");
}

function showDecision(r) {
  const syn = $("result-synthetic");
  syn.hidden = !r.synthetic;
  syn.textContent = r.synthetic ? (r.synthetic_notice || "SYNTHETIC") : "";
  $("result-patient").textContent = r.patient_id;
  const dec = $("decision");
  dec.textContent = r.decision;
  dec.className = "decision " + (r.decision === "MVI likely" ? "likely" : "unlikely");
  $("decision-basis").textContent = "(threshold " + pct(r.threshold) + ", by " + r.decision_basis + ")";
  $("nomogram").textContent = r.nomogram
    ? pct(r.nomogram.risk) + " (95 % CI " + pct(r.nomogram.ci_low) + " to " + pct(r.nomogram.ci_high) + "; " + r.nomogram.formula + ")"
    : "not available (the model was exported without a nomogram)";
  const p = $("probability");
  p.textContent = fmt(r.probability, 3);
  p.dataset.probability = String(r.probability);
}

function showFirst(r, ms) {
  // the first answer: the rest of the result is still being computed
  state.urls.forEach((u) => URL.revokeObjectURL(u));
  state.urls = [];
  $("result-section").hidden = false;
  $("result-section").dataset.firstMs = String(Math.round(ms));
  delete $("result-section").dataset.fullMs;
  showDecision(r);
  $("probability").dataset.first = String(r.probability);
  $("probability-detail").textContent = "DL-MVI = " + r.dl_mvi + " at " + r.dl_threshold + "; first key slice of each sequence";
  const s = $("spread");
  s.textContent = "computing\u2026";
  s.dataset.state = "pending";
  $("result-afp").textContent = "";
  $("input-warnings").textContent = "";
  ["dl-result", "dl-card", "dl-rois"].forEach((id) => { $(id).hidden = true; });
  $("card").hidden = true;
  $("reproduce").hidden = true;
  $("result-section").scrollIntoView();
}

function download(id, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type }));
  state.urls.push(url);
  const a = $(id);
  a.href = url;
  a.hidden = false;
}

function showResult(out) {
  const r = out.result;
  $("result-section").hidden = false;
  showDecision(r);
  $("probability-detail").textContent = "DL-MVI = " + r.dl_mvi + " at " + r.dl_threshold + "; first key slice of each sequence" +
    (r.probability === r.probability_first_slice ? "" : " (model input: mean over the combinations)");
  const s = r.spread;
  $("spread").textContent = s.n + " combinations: min " + fmt(s.min) + ", median " + fmt(s.median) + ", max " + fmt(s.max) + ", sd " + fmt(s.sd);
  $("spread").dataset.state = "done";
  $("result-backend").textContent = r.backend ? r.backend.backend + " (" + r.backend.precision + ")" : "torch";
  $("result-afp").textContent = r.afp_ng_ml === null ? "not given" : r.afp_ng_ml + " ng/mL";
  const warns = $("input-warnings");
  warns.textContent = "";
  (r.input_warnings || []).forEach((w) => { const li = document.createElement("li"); li.textContent = w; warns.appendChild(li); });
  download("dl-result", JSON.stringify(r, null, 2) + "\n", "application/json");
  $("dl-result").hidden = false;
  const card = $("card");
  if (out.card_html) {
    download("dl-card", out.card_html, "text/html");
    card.srcdoc = out.card_html;
    card.hidden = false;
  } else {
    $("dl-card").hidden = true;
    card.hidden = true;
  }
  const repro = $("reproduce");
  if (out.rois_csv) {
    download("dl-rois", out.rois_csv, "text/csv");
    repro.textContent = (out.report_id && state.openStudy)
      ? "To reproduce: dlmvi predict-patient MODEL_DIR --pacs " + state.model.pacs + " --study " +
        state.openStudy.study_uid + " --afp " + r.afp_ng_ml + " --rois rois.csv"
      : "To reproduce: dlmvi predict-patient MODEL_DIR PATIENT_ARCHIVE --afp " + r.afp_ng_ml +
        " --id " + r.patient_id + " --rois rois.csv";
    repro.hidden = false;
  } else {
    $("dl-rois").hidden = true;
    repro.hidden = true;
  }
  state.reportId = out.report_id || null;
  $("send-sr-line").hidden = !out.report_id;
  $("send-sr").disabled = false;
  $("send-sr-status").textContent = "";
  $("result-section").scrollIntoView();
}

async function onCancel() {
  const up = state.upload;
  state.upload = null;
  $("viewer-section").hidden = true;
  setStatus("");
  if (up) { try { await api("/api/uploads/" + up.upload_id, { method: "DELETE" }); } catch (e) { /* gone already */ } }
}

function onNewPatient() {
  $("upload-form").reset();
  $("result-section").hidden = true;
  $("card").srcdoc = "";
  setStatus("");
  showError("");
  window.scrollTo(0, 0);
}

document.addEventListener("DOMContentLoaded", () => {
  $("upload-form").addEventListener("submit", onSubmit);
  const canvas = $("canvas");
  canvas.addEventListener("mousedown", onMouseDown);
  window.addEventListener("mousemove", onMouseMove);
  window.addEventListener("mouseup", onMouseUp);
  canvas.addEventListener("wheel", onWheel, { passive: false });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  $("slice").addEventListener("input", (e) => setSlice(Number(e.target.value)));
  $("window").addEventListener("input", (e) => { state.view[state.seq].window = Number(e.target.value); syncControls(); draw(); });
  $("level").addEventListener("input", (e) => { state.view[state.seq].level = Number(e.target.value); syncControls(); draw(); });
  $("auto-window").addEventListener("click", () => {
    const [lo, hi] = state.volumes[state.seq].info.window;
    Object.assign(state.view[state.seq], { window: hi - lo, level: (hi + lo) / 2 });
    syncControls(); draw();
  });
  $("copy-next").addEventListener("click", () => {
    const v = state.view[state.seq];
    const b = state.boxes[state.seq][v.slice];
    if (!b) { showError("Draw a box on this slice first."); return; }
    const nz = state.volumes[state.seq].info.shape[0];
    if (v.slice + 1 < nz) { state.boxes[state.seq][v.slice + 1] = b.slice(); setSlice(v.slice + 1); }
  });
  $("delete-box").addEventListener("click", () => { delete state.boxes[state.seq][state.view[state.seq].slice]; draw(); });
  $("predict-boxes").addEventListener("click", onPredictBoxes);
  $("cancel-upload").addEventListener("click", onCancel);
  $("new-patient").addEventListener("click", onNewPatient);
  $("send-sr").addEventListener("click", onSendSr);
  $("worklist-refresh").addEventListener("click", loadWorklist);
  loadModel();
});

// dlmvi annotate: the worklist page. Plain JavaScript, no build step, nothing from the internet.
// The worklist (GET /api/worklist) lists every patient's state per sequence; a patient's volumes are
// drawn on a canvas like serve's viewer. A box drawn on one sequence is set on n consecutive slices,
// saved as a proposal and carried to the other sequences by the server (POST .../carry); each
// sequence is confirmed on its own (POST .../confirm), which writes the reader's rois.<reader>.csv.
"use strict";

const $ = (id) => document.getElementById(id);
const S = { list: null, patient: null, seq: null, volumes: {}, boxes: {}, edited: {}, base: {}, view: {}, drag: null };

async function api(path, options) {
  let resp;
  try {
    resp = await fetch(path, options || {});
  } catch (err) {
    throw new Error("the server cannot be reached (" + err.message + "); is `dlmvi annotate` still running?");
  }
  if (!resp.ok) {
    let detail = resp.status + " " + resp.statusText;
    try { const body = await resp.json(); if (body && body.detail) detail = String(body.detail); } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return resp;
}

function postJSON(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function showError(message) { const e = $("error"); e.textContent = message || ""; e.hidden = !message; }
function setStatus(text) { $("status").textContent = text || ""; }

// ---- worklist ---------------------------------------------------------------------------------
async function loadWorklist(reload) {
  try {
    S.list = await (await api("/api/worklist" + (reload ? "?reload=true" : ""))).json();
  } catch (err) { showError(err.message); return; }
  $("reader").textContent = S.list.reader;
  $("reader-file").textContent = S.list.file;
  document.querySelectorAll(".n-slices").forEach((el) => { el.textContent = S.list.n_slices; });
  if (S.list.synthetic) { const b = $("synthetic-banner"); b.textContent = "SYNTHETIC cohort: phantom data, not patients."; b.hidden = false; }
  const head = document.querySelector("#worklist thead tr");
  head.querySelectorAll("th.seq").forEach((th) => th.remove());
  S.list.sequences.forEach((s) => { const th = document.createElement("th"); th.className = "seq"; th.textContent = s; head.appendChild(th); });
  renderWorklist();
  if (reload) setStatus("worklist reloaded");
}

function visible(row) {
  const f = $("filter-state").value, t = $("filter-text").value.trim().toLowerCase();
  if (t && !row.patient_id.toLowerCase().includes(t)) return false;
  if (f === "todo") return !row.done;
  if (f === "done") return row.done;
  if (f === "proposed") return Object.values(row.states).includes("proposed");
  return true;
}

function renderWorklist() {
  const body = document.querySelector("#worklist tbody");
  const frag = document.createDocumentFragment();
  for (const row of S.list.patients) {
    if (!visible(row)) continue;
    const tr = document.createElement("tr");
    tr.dataset.patient = row.patient_id;
    tr.id = "row-" + row.patient_id;
    tr.className = (row.done ? "done" : "") + (S.patient && S.patient.patient_id === row.patient_id ? " current" : "");
    const cells = [row.patient_id, row.cohort];
    cells.forEach((v) => { const td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
    for (const s of S.list.sequences) {
      const td = document.createElement("td");
      const span = document.createElement("span");
      span.className = "st " + row.states[s];
      span.textContent = row.states[s];
      td.appendChild(span);
      tr.appendChild(td);
    }
    tr.addEventListener("click", () => openPatient(row.patient_id));
    frag.appendChild(tr);
  }
  body.textContent = "";
  body.appendChild(frag);
  const done = S.list.patients.filter((r) => r.done).length;
  S.list.done = done;
  $("progress-text").textContent = done + " of " + S.list.total + " patients done";
  $("progress").max = Math.max(S.list.total, 1);
  $("progress").value = done;
}

function updateEntry(entry) {
  const i = S.list.patients.findIndex((r) => r.patient_id === entry.patient_id);
  if (i >= 0) S.list.patients[i] = entry;
  renderWorklist();
}

// ---- one patient --------------------------------------------------------------------------------
async function openPatient(pid) {
  showError("");
  setStatus("loading " + pid + "\u2026");
  let p;
  try {
    p = await (await api("/api/patients/" + encodeURIComponent(pid))).json();
    S.volumes = {};
    for (const [seq, info] of Object.entries(p.sequences)) {
      if (!info.shape) continue;
      const buf = await (await api("/api/patients/" + encodeURIComponent(pid) + "/volumes/" + seq)).arrayBuffer();
      S.volumes[seq] = { data: new Uint16Array(buf), info: info };
    }
  } catch (err) { showError(err.message); setStatus(""); return; }
  S.patient = p;
  S.boxes = {}; S.edited = {}; S.base = {}; S.view = {};
  for (const seq of Object.keys(S.volumes)) {
    const info = p.sequences[seq];
    const rows = info.confirmed || info.proposed || [];
    S.base[seq] = info.confirmed || null;
    S.boxes[seq] = {};
    rows.forEach((r) => { S.boxes[seq][r[0]] = r.slice(1); });
    const [lo, hi] = info.window;
    const z = rows.length ? rows[Math.floor(rows.length / 2)][0] : Math.floor(info.shape[0] / 2);
    S.view[seq] = { slice: z, window: hi - lo, level: (hi + lo) / 2 };
  }
  $("patient-section").hidden = false;
  $("patient-id").textContent = pid;
  renderNotes([]);
  renderTabs();
  updateEntry(p.worklist);
  const first = Object.keys(S.volumes).find((s) => p.sequences[s].state !== "confirmed") || Object.keys(S.volumes)[0];
  if (first) selectSequence(first); else setStatus("nothing to draw: every sequence has a mask file");
  setStatus(first ? "patient " + pid : "");
}

function renderNotes(extra) {
  const ul = $("notes");
  ul.textContent = "";
  const notes = [...extra];
  for (const [a, refused] of Object.entries(S.patient.carry || {})) {
    for (const [b, why] of Object.entries(refused)) {
      if (a < b) notes.push(a + " and " + b + ": boxes are not carried between them (" + why + "); draw on each");
    }
  }
  notes.forEach((n) => { const li = document.createElement("li"); li.textContent = n; ul.appendChild(li); });
}

function renderTabs() {
  const tabs = $("seq-tabs");
  tabs.textContent = "";
  for (const seq of Object.keys(S.patient.sequences)) {
    const st = S.patient.sequences[seq].state;
    const b = document.createElement("button");
    b.type = "button"; b.textContent = seq; b.dataset.seq = seq; b.id = "tab-" + seq;
    b.className = st + (seq === S.seq ? " active" : "");
    b.disabled = !S.volumes[seq];
    b.title = st;
    b.addEventListener("click", () => selectSequence(seq));
    tabs.appendChild(b);
  }
}

function selectSequence(seq) {
  S.seq = seq;
  const vol = S.volumes[seq];
  const [nz, ny, nx] = vol.info.shape;
  const canvas = $("canvas");
  canvas.width = nx; canvas.height = ny;
  const [sx, sy] = vol.info.spacing;
  canvas.style.height = (512 * (ny * sy) / (nx * sx)).toFixed(1) + "px";
  const range = vol.info.scale * 65535;
  $("slice").max = nz - 1;
  for (const id of ["window", "level"]) {
    const el = $(id);
    el.min = id === "window" ? Math.max(range / 1000, 1e-6) : vol.info.offset;
    el.max = id === "window" ? range : vol.info.offset + range;
    el.step = range / 1000 || 1;
  }
  renderTabs();
  syncControls();
  draw();
}

function syncControls() {
  const v = S.view[S.seq];
  $("slice").value = v.slice; $("window").value = v.window; $("level").value = v.level;
  $("slice-label").textContent = v.slice + " / " + (S.volumes[S.seq].info.shape[0] - 1);
  $("window-label").textContent = v.window.toFixed(1);
  $("level-label").textContent = v.level.toFixed(1);
}

function draw() {
  const seq = S.seq, vol = S.volumes[seq], v = S.view[seq];
  const [, ny, nx] = vol.info.shape;
  const ctx = $("canvas").getContext("2d");
  const img = ctx.createImageData(nx, ny);
  const base = v.slice * nx * ny, lo = v.level - v.window / 2, k = 255 / Math.max(v.window, 1e-12);
  const { offset, scale } = vol.info;
  for (let i = 0; i < nx * ny; i++) {
    const g = Math.max(0, Math.min(255, (offset + scale * vol.data[base + i] - lo) * k));
    img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = g;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  ctx.lineWidth = Math.max(1, nx / 512);
  for (const dz of [-1, 1]) {
    const b = S.boxes[seq][v.slice + dz];
    if (b) { ctx.setLineDash([3, 3]); ctx.strokeStyle = "#ffd54f"; ctx.strokeRect(b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1); }
  }
  ctx.setLineDash([]);
  const box = S.drag && S.drag.box ? S.drag.box : S.boxes[seq][v.slice];
  const st = S.patient.sequences[seq].state;
  if (box) { ctx.strokeStyle = st === "confirmed" && !S.edited[seq] ? "#00e676" : "#ff9100"; ctx.strokeRect(box[0], box[1], box[2] - box[0] + 1, box[3] - box[1] + 1); }
  renderBoxes();
}

function boxedSlices(seq) { return Object.keys(S.boxes[seq]).map(Number).sort((a, b) => a - b); }
function rowsOf(seq) { return boxedSlices(seq).map((z) => [z, ...S.boxes[seq][z]]); }

function renderBoxes() {
  const body = document.querySelector("#boxes-table tbody");
  body.textContent = "";
  for (const r of rowsOf(S.seq)) {
    const tr = document.createElement("tr");
    r.forEach((v) => { const td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
    body.appendChild(tr);
  }
  $("seq-name").textContent = S.seq;
  const st = S.patient.sequences[S.seq].state;
  $("seq-state").textContent = st + (S.edited[S.seq] ? " (changed, not confirmed)" : "");
}

// ---- drawing ------------------------------------------------------------------------------------
function voxelAt(event) {
  const canvas = $("canvas"), r = canvas.getBoundingClientRect();
  const x = Math.floor((event.clientX - r.left) * canvas.width / r.width);
  const y = Math.floor((event.clientY - r.top) * canvas.height / r.height);
  return [Math.max(0, Math.min(canvas.width - 1, x)), Math.max(0, Math.min(canvas.height - 1, y))];
}

function onMouseDown(event) {
  if (!S.seq) return;
  event.preventDefault();
  const p = voxelAt(event), v = S.view[S.seq];
  if (event.button === 2) S.drag = { wl: true, x: event.clientX, y: event.clientY, window: v.window, level: v.level };
  else if (event.button === 0 && event.shiftKey) S.drag = { move: true, start: p, orig: JSON.parse(JSON.stringify(S.boxes[S.seq])) };
  else if (event.button === 0) S.drag = { start: p, box: [p[0], p[1], p[0], p[1]] };
}

function onMouseMove(event) {
  const d = S.drag;
  if (!d) return;
  const v = S.view[S.seq];
  if (d.wl) {
    const range = S.volumes[S.seq].info.scale * 65535;
    v.window = Math.max(range / 1000, d.window + (event.clientX - d.x) * range / 500);
    v.level = d.level - (event.clientY - d.y) * range / 500;
    syncControls();
  } else if (d.move) {
    const p = voxelAt(event), [, ny, nx] = S.volumes[S.seq].info.shape;
    for (const [z, b] of Object.entries(d.orig)) {
      const dx = Math.max(-b[0], Math.min(nx - 1 - b[2], p[0] - d.start[0]));
      const dy = Math.max(-b[1], Math.min(ny - 1 - b[3], p[1] - d.start[1]));
      S.boxes[S.seq][z] = [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy];
    }
  } else {
    const p = voxelAt(event);
    d.box = [Math.min(d.start[0], p[0]), Math.min(d.start[1], p[1]), Math.max(d.start[0], p[0]), Math.max(d.start[1], p[1])];
  }
  draw();
}

function onMouseUp() {
  const d = S.drag;
  S.drag = null;
  if (!d || d.wl) { if (d) draw(); return; }
  if (d.move) { S.edited[S.seq] = true; draw(); saveDraft(S.seq, false); return; }
  if (!(d.box[2] > d.box[0] && d.box[3] > d.box[1])) { draw(); return; }
  const seq = S.seq, z = S.view[seq].slice, n = S.list.n_slices, nz = S.volumes[seq].info.shape[0];
  if (S.boxes[seq][z] && boxedSlices(seq).length === n) {
    S.boxes[seq][z] = d.box;  // resize this slice's box
  } else {  // a new box: on n consecutive slices centred on this one
    const first = Math.max(0, Math.min(nz - n, z - Math.floor((n - 1) / 2)));
    S.boxes[seq] = {};
    for (let s = first; s < first + n; s++) S.boxes[seq][s] = d.box.slice();
  }
  S.edited[seq] = true;
  draw();
  saveDraft(seq, true);
}

// Saves the drawn boxes as a proposal and carries them to the sequences the reader has not touched.
async function saveDraft(seq, carry) {
  if (boxedSlices(seq).length !== S.list.n_slices) return;
  showError("");
  setStatus(carry ? "carrying\u2026" : "saving\u2026");
  const targets = carry ? Object.keys(S.volumes).filter((s) => s !== seq && !S.edited[s] && S.patient.sequences[s].state !== "confirmed") : [];
  try {
    const out = await (await postJSON(carryUrl(seq, "carry"), { boxes: rowsOf(seq), fingerprint: S.patient.fingerprint, targets: targets })).json();
    S.patient.sequences[seq].state = out.worklist.states[seq];
    for (const [s, rows] of Object.entries(out.carried)) {
      if (!targets.includes(s)) continue;
      S.boxes[s] = {};
      rows.forEach((r) => { S.boxes[s][r[0]] = r.slice(1); });
      S.view[s].slice = rows[Math.floor(rows.length / 2)][0];
      S.patient.sequences[s].state = out.worklist.states[s];
    }
    renderNotes(Object.entries(out.refused).filter(([s]) => targets.includes(s)).map(([, why]) => why));
    updateEntry(out.worklist);
    renderTabs();
    showError("");
    setStatus(carry ? "carried to " + (Object.keys(out.carried).filter((s) => targets.includes(s)).join(", ") || "no other sequence") : "saved as a proposal");
  } catch (err) { showError(err.message); }
}

function carryUrl(seq, what) {
  return "/api/patients/" + encodeURIComponent(S.patient.patient_id) + "/sequences/" + seq + "/" + what;
}

async function confirmSequence() {
  if (!S.seq) return;
  const seq = S.seq;
  showError("");
  setStatus("saving " + seq + "\u2026");
  try {
    const out = await (await postJSON(carryUrl(seq, "confirm"), { boxes: rowsOf(seq), fingerprint: S.patient.fingerprint, base: S.base[seq] })).json();
    S.base[seq] = out.confirmed;
    S.edited[seq] = false;
    S.patient.sequences[seq].state = "confirmed";
    updateEntry(out.worklist);
    showError("");
    setStatus(seq + " confirmed; saved to " + S.list.file);
    const next = nextSequence(seq, true);
    if (next) selectSequence(next); else { renderTabs(); draw(); }
  } catch (err) { showError(err.message); setStatus("nothing was saved"); }
}

function nextSequence(seq, todoOnly) {
  const seqs = Object.keys(S.volumes), i = seqs.indexOf(seq);
  for (let k = 1; k <= seqs.length; k++) {
    const s = seqs[(i + k) % seqs.length];
    if (!todoOnly || S.patient.sequences[s].state !== "confirmed") return s === seq && todoOnly ? null : s;
  }
  return null;
}

function nextPatient() {
  const rows = S.list.patients.filter(visible);
  const i = S.patient ? rows.findIndex((r) => r.patient_id === S.patient.patient_id) : -1;
  const after = rows.slice(i + 1).find((r) => !r.done) || rows[i + 1];
  if (after) openPatient(after.patient_id); else setStatus("no further patient in this list");
}

function setSlice(z) {
  const v = S.view[S.seq], nz = S.volumes[S.seq].info.shape[0];
  v.slice = Math.max(0, Math.min(nz - 1, Math.round(z)));
  syncControls();
  draw();
}

function onKey(event) {
  if (event.target && ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName) && event.target.type !== "range") return;
  const k = event.key;
  if (k === "n" || k === "N") nextPatient();
  else if (k === "r" || k === "R") loadWorklist(true);
  else if (!S.seq) return;
  else if (k === "s" || k === "S") { const s = nextSequence(S.seq, false); if (s) selectSequence(s); }
  else if (k === "c" || k === "C") confirmSequence();
  else if (k === "ArrowUp") setSlice(S.view[S.seq].slice - 1);
  else if (k === "ArrowDown") setSlice(S.view[S.seq].slice + 1);
  else if (k === "Delete" || k === "Backspace") { delete S.boxes[S.seq][S.view[S.seq].slice]; S.edited[S.seq] = true; draw(); }
  else return;
  event.preventDefault();
}

window.addEventListener("DOMContentLoaded", () => {
  const canvas = $("canvas");
  canvas.addEventListener("mousedown", onMouseDown);
  window.addEventListener("mousemove", onMouseMove);
  window.addEventListener("mouseup", onMouseUp);
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("wheel", (e) => { if (S.seq) { e.preventDefault(); setSlice(S.view[S.seq].slice + (e.deltaY > 0 ? 1 : -1)); } }, { passive: false });
  $("slice").addEventListener("input", (e) => setSlice(Number(e.target.value)));
  for (const id of ["window", "level"]) $(id).addEventListener("input", (e) => { S.view[S.seq][id] = Number(e.target.value); syncControls(); draw(); });
  $("filter-state").addEventListener("change", renderWorklist);
  $("filter-text").addEventListener("input", renderWorklist);
  $("confirm").addEventListener("click", confirmSequence);
  $("next-seq").addEventListener("click", () => { if (S.seq) { const s = nextSequence(S.seq, false); if (s) selectSequence(s); } });
  $("next-patient").addEventListener("click", nextPatient);
  document.addEventListener("keydown", onKey);
  loadWorklist(false);
});

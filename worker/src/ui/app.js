// Ferry console: plain JavaScript on the worker's REST API. The token (when the worker has
// one) is kept in this tab's sessionStorage and sent as a Bearer header on every API call.
"use strict";

const TOKEN_KEY = "ferry-token";
const POLL_MS = 2000;
const RATE_POINTS = 60;
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const PAGES = ["pipelines", "backups", "restore"];

/** Creates an element with attributes and children (strings become text). */
function el(tag, attrs, ...children) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

class Unauthorized extends Error {}

/** An API error with the pipeline position when the worker gives one. */
class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : "HTTP " + status);
    this.status = status;
    this.line = body && body.line;
    this.column = body && body.column;
  }
}

/** Calls the API; throws Unauthorized (and shows the sign-in form) on 401. */
async function api(method, path, body, contentType) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body != null) headers["Content-Type"] = contentType || "application/yaml";
  const r = await fetch(path, { method, headers, body });
  if (r.status === 401) {
    showLogin(token ? "The worker refused this token." : "");
    throw new Unauthorized();
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// ------------------------------------------------------------------ pages and sign-in

let signedIn = false;

function showLogin(message) {
  signedIn = false;
  for (const id of PAGES) $(id).hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("logout").hidden = true;
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  try {
    await api("GET", "/workers");
    route();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("login-error").textContent = e.message;
  }
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("");
}

/** Shows the page the URL's fragment names (#pipelines by default). */
async function route() {
  const page = PAGES.find((p) => location.hash === "#" + p) || "pipelines";
  try {
    const w = await api("GET", "/workers");
    $("worker").textContent = "group " + w.group + " · " + w.this_worker;
  } catch (e) {
    if (e instanceof Unauthorized) return;
    $("worker").textContent = "worker unreachable: " + e.message;
  }
  signedIn = true;
  $("login").hidden = true;
  $("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  for (const id of PAGES) {
    $(id).hidden = id !== page;
    const link = $("nav-" + id);
    if (id === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (page === "pipelines") refreshPipelines();
  else if (page === "backups") loadBackupList();
  else loadRestore();
}

// ------------------------------------------------------------------ pipelines

/** name -> { card, parts, samples: [{t, sum}], rates: [] } */
const cards = new Map();

async function refreshPipelines() {
  if (!signedIn || $("pipelines").hidden) return;
  try {
    const names = await api("GET", "/pipelines");
    $("pipelines-error").textContent = "";
    $("pipelines-empty").hidden = names.length > 0;
    for (const [name, c] of cards) if (!names.includes(name)) { c.card.remove(); cards.delete(name); }
    for (const name of names) {
      if (!cards.has(name)) addCard(name);
      try {
        updateCard(name, await api("GET", "/pipelines/" + encodeURIComponent(name) + "/status"));
      } catch (e) {
        if (e instanceof Unauthorized) return;
        cards.get(name).parts.error.textContent = e.message;
      }
    }
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("pipelines-error").textContent = "Cannot list pipelines: " + e.message;
  }
}

function addCard(name) {
  const parts = {
    state: el("span", { class: "state", text: "…" }),
    chart: el("svg:svg", { viewBox: "0 0 240 44", preserveAspectRatio: "none", role: "img",
      "aria-label": "records per second, last two minutes" }),
    rate: el("span", { class: "num", text: "– rec/s" }),
    table: el("tbody"),
    checkpoint: el("p", { class: "muted checkpoint" }),
    error: el("p", { class: "error", role: "alert" }),
  };
  const path = "/pipelines/" + encodeURIComponent(name);
  const action = (label, verb, cls) => el("button", {
    type: "button", class: cls || "", "aria-label": label + " " + name, text: label,
    onclick: () => act(name, verb, path),
  });
  const card = el("article", { class: "card pipeline", "data-name": name, "aria-label": "pipeline " + name },
    el("div", { class: "head" }, el("h3", { text: name }), parts.state),
    el("div", { class: "rate" }, parts.chart, parts.rate),
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { class: "num", text: "partition" }), el("th", { class: "num", text: "offset" }),
        el("th", { class: "num", text: "lag" }), el("th", { text: "worker" }))),
      parts.table)),
    parts.checkpoint,
    parts.error,
    el("div", { class: "actions" },
      action("Pause", "pause"), action("Resume", "resume"), action("Restart", "restart"),
      action("Edit", "edit"), action("Delete", "delete", "danger")));
  $("pipeline-list").append(card);
  cards.set(name, { card, parts, samples: [], rates: [] });
}

async function act(name, verb, path) {
  const c = cards.get(name);
  try {
    if (verb === "edit") return openEditor(name);
    if (verb === "delete") {
      if (!confirm("Delete pipeline " + name + "? Its tasks stop after writing what they read.")) return;
      await api("DELETE", path);
    } else {
      await api("POST", path + "/" + verb);
    }
    if (c) c.parts.error.textContent = "";
    refreshPipelines();
  } catch (e) {
    if (!(e instanceof Unauthorized) && c) c.parts.error.textContent = verb + " failed: " + e.message;
  }
}

function updateCard(name, status) {
  const c = cards.get(name);
  c.parts.state.textContent = status.state;
  c.parts.state.className = "state " + status.state;
  c.parts.error.textContent = status.error || "";
  // Rows grouped by topic (a topic's name once, above its partitions).
  const partitions = [];
  for (const t of status.tasks || []) {
    for (const p of t.partitions || []) partitions.push({ ...p, worker: t.worker.replace(/^https?:\/\//, "") });
  }
  partitions.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  const rows = [];
  let sum = 0;
  let topic = null;
  for (const p of partitions) {
    sum += Math.max(p.offset, 0);
    if (p.topic !== topic) {
      topic = p.topic;
      rows.push(el("tr", { class: "topic-row" }, el("th", { colspan: "4", scope: "rowgroup", text: topic })));
    }
    rows.push(el("tr", { "data-topic": p.topic },
      el("td", { class: "num", text: p.partition }),
      el("td", { class: "num", text: p.offset < 0 ? "–" : p.offset }),
      el("td", { class: "num", text: p.lag }), el("td", { text: p.worker })));
  }
  if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: "4", class: "muted", text: "no partitions reported" })));
  c.parts.table.replaceChildren(...rows);
  c.parts.checkpoint.textContent = checkpointLine(status.tasks || []);
  recordRate(c, sum);
}

/** The latest checkpoint the pipeline's tasks wrote: when, and the offsets it holds. */
function checkpointLine(tasks) {
  const cps = tasks.map((t) => t.checkpoint).filter(Boolean);
  if (!cps.length) return "Last checkpoint: none written yet";
  const last = cps.reduce((a, b) => (a.at_ms >= b.at_ms ? a : b));
  const ago = Math.max(0, Math.round((Date.now() - last.at_ms) / 1000));
  return "Last checkpoint: " + time(last.at_ms) + " (" + ago + " s ago), offsets of " + last.partitions +
    " partitions, summing " + last.offsets_sum + (cps.length > 1 ? "; the latest of " + cps.length + " tasks" : "");
}

/** Records/s from successive polls of the offsets' sum, drawn as a line. */
function recordRate(c, sum) {
  const now = performance.now();
  const last = c.samples[c.samples.length - 1];
  c.samples = [{ t: now, sum }];
  if (!last || now <= last.t) return;
  // A restart or rebalance may move offsets back: count that as 0, not negative.
  const rate = Math.max(0, (sum - last.sum) * 1000 / (now - last.t));
  c.rates.push(rate);
  if (c.rates.length > RATE_POINTS) c.rates.shift();
  c.parts.rate.textContent = formatRate(rate) + " rec/s";
  const max = Math.max(1, ...c.rates);
  const step = 240 / (RATE_POINTS - 1);
  const x0 = 240 - step * (c.rates.length - 1);
  const points = c.rates.map((r, i) => (x0 + i * step).toFixed(1) + "," + (42 - (r / max) * 38).toFixed(1));
  const area = x0.toFixed(1) + ",42 " + points.join(" ") + " 240,42";
  c.parts.chart.replaceChildren(
    el("svg:polygon", { points: area, fill: "#cfe0f5" }),
    el("svg:polyline", { points: points.join(" "), fill: "none", stroke: "#0b5cad", "stroke-width": "2",
      "vector-effect": "non-scaling-stroke" }));
}

function formatRate(r) {
  return r >= 1000 ? (r / 1000).toFixed(1) + "k" : r.toFixed(r < 10 ? 1 : 0);
}

// ------------------------------------------------------------------ the YAML editor

const TEMPLATE = "name: NAME\nsource:\n  type: kafka\n  brokers: [\"127.0.0.1:9092\"]\n  topics: [orders]\n" +
  "sink:\n  type: storage\n  uri: file:///var/backups/NAME\n";

async function openEditor(name) {
  $("editor").hidden = false;
  $("editor-name").value = name || "";
  $("editor-name").readOnly = !!name;
  $("editor-title").textContent = name ? "Edit " + name : "New pipeline";
  setMessage("", "");
  $("editor-text").value = name ? "" : TEMPLATE;
  if (name) {
    try {
      $("editor-text").value = (await api("GET", "/pipelines/" + encodeURIComponent(name))).config;
    } catch (e) {
      if (!(e instanceof Unauthorized)) setMessage("Cannot load " + name + ": " + e.message, "bad");
    }
  }
  drawGutter(null);
  (name ? $("editor-text") : $("editor-name")).focus();
}

function closeEditor() {
  $("editor").hidden = true;
  $("new-pipeline").focus();
}

function setMessage(text, kind) {
  $("editor-message").textContent = text;
  $("editor-message").className = kind;
}

/** Line numbers beside the text, the bad line marked. */
function drawGutter(badLine) {
  const n = $("editor-text").value.split("\n").length;
  const lines = [];
  for (let i = 1; i <= n; i++) {
    lines.push(i === badLine ? el("span", { class: "bad", text: String(i) }) : String(i) + "\n");
  }
  $("editor-gutter").replaceChildren(...lines);
  $("editor-gutter").scrollTop = $("editor-text").scrollTop;
}

/** Validates through the API; on an error shows it at its line and puts the cursor there. */
async function validate() {
  const name = $("editor-name").value.trim();
  if (!/^[A-Za-z0-9._-]+$/.test(name)) {
    setMessage("Give the pipeline a name: letters, digits, “.”, “_” and “-”.", "bad");
    $("editor-name").focus();
    return false;
  }
  try {
    await api("POST", "/pipelines/" + encodeURIComponent(name) + "/validate", $("editor-text").value);
    drawGutter(null);
    setMessage("Valid.", "ok");
    return true;
  } catch (e) {
    if (e instanceof Unauthorized) return false;
    if (e.line) {
      setMessage("Line " + e.line + ", column " + e.column + ": " + e.message, "bad");
      drawGutter(e.line);
      selectLine(e.line);
    } else {
      drawGutter(null);
      setMessage(e.message, "bad");
    }
    return false;
  }
}

function selectLine(line) {
  const ta = $("editor-text");
  const lines = ta.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  ta.focus();
  ta.setSelectionRange(start, start + (lines[line - 1] || "").length);
  ta.scrollTop = Math.max(0, (line - 4) * 18);
}

async function save(event) {
  event.preventDefault();
  if (!(await validate())) return;
  const name = $("editor-name").value.trim();
  try {
    await api("PUT", "/pipelines/" + encodeURIComponent(name), $("editor-text").value);
    setMessage("Saved.", "ok");
    $("editor-name").readOnly = true;
    refreshPipelines();
  } catch (e) {
    if (!(e instanceof Unauthorized)) setMessage("Not saved: " + e.message, "bad");
  }
}

// ------------------------------------------------------------------ backups

async function loadBackupList() {
  try {
    const list = await api("GET", "/backups");
    $("backups-error").textContent = "";
    $("backups-empty").hidden = list.length > 0;
    $("backup-chooser").hidden = list.length === 0;
    const select = $("backup-select");
    const chosen = select.value;
    select.replaceChildren(...list.map((b) =>
      el("option", { value: String(b.index), text: b.uri, "data-added": b.added ? "1" : "" })));
    if (chosen && list.some((b) => String(b.index) === chosen)) select.value = chosen;
    if (list.length) showBackup();
    else $("backup-detail").replaceChildren();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("backups-error").textContent = "Cannot list backups: " + e.message;
  }
}

/** Adds a backup location through the API and shows it. */
async function addBackup(ev) {
  ev.preventDefault();
  const uri = $("backup-add-uri").value.trim();
  $("backup-add-error").textContent = "";
  try {
    const added = await api("POST", "/backups", JSON.stringify({ uri }), "application/json");
    $("backup-add-uri").value = "";
    await loadBackupList();
    $("backup-select").value = String(added.index);
    showBackup();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("backup-add-error").textContent = "Cannot add it: " + e.message;
  }
}

/** Forgets the chosen location (only those added through the API), after asking. */
async function removeBackup() {
  const select = $("backup-select");
  const option = select.selectedOptions[0];
  if (!option || !option.dataset.added) return;
  if (!confirm("Forget the location " + option.textContent + "? Its backup is not touched.")) return;
  try {
    await api("DELETE", "/backups/" + encodeURIComponent(select.value));
    select.value = "";
    await loadBackupList();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("backups-error").textContent = "Cannot remove it: " + e.message;
  }
}

async function showBackup() {
  const index = $("backup-select").value;
  const option = $("backup-select").selectedOptions[0];
  $("backup-remove").hidden = !(option && option.dataset.added);
  const detail = $("backup-detail");
  detail.replaceChildren(el("p", { class: "muted", text: "Reading the backup…" }));
  try {
    const s = await api("GET", "/backups/" + encodeURIComponent(index));
    detail.replaceChildren(verifyPanel(index), backupView(s));
  } catch (e) {
    if (!(e instanceof Unauthorized)) detail.replaceChildren(el("p", { class: "error", text: e.message }));
  }
}

/** The Verify button, its progress bar and the result of the last run. */
function verifyPanel(index) {
  const path = "/backups/" + encodeURIComponent(index) + "/verify";
  const button = el("button", { type: "button", id: "verify", text: "Verify" });
  const bar = el("progress", { id: "verify-progress", max: "1", value: "0", "aria-label": "verification progress" });
  const status = el("span", { id: "verify-status", role: "status", class: "muted" });
  const problems = el("ul", { id: "verify-problems", class: "error" });
  const panel = el("div", { class: "card verify" },
    el("div", { class: "bar" }, el("h3", { text: "Verification" }), button, bar, status), problems);
  const show = (run) => {
    const p = run.progress;
    bar.max = Math.max(1, p.segments_total);
    bar.value = p.segments_checked;
    bar.hidden = run.state === "never";
    button.disabled = run.state === "running";
    const r = run.report;
    const summary = r ? r.segments + " segments, " + r.records + " records, " + bytes(r.bytes) : "";
    status.className = run.state === "passed" ? "ok" : run.state === "never" || run.state === "running" ? "muted" : "error";
    status.textContent = {
      never: "Not verified by this worker since it started.",
      running: "Checking segment " + p.segments_checked + " of " + p.segments_total + " (" + bytes(p.bytes) + " read)…",
      passed: "Passed at " + time(run.finished_ms) + ": " + summary +
        (r && r.problems.length ? ", " + r.problems.length + " warnings" : "") +
        (r && r.encrypted_unopened ? "; " + r.encrypted_unopened + " encrypted segments checked without their key" : "") + ".",
      damaged: "DAMAGED (" + time(run.finished_ms) + "): " + (r ? r.problems.length : 0) + " problems in " + summary + ".",
      failed: "Could not verify: " + run.error,
    }[run.state] || run.state;
    problems.replaceChildren(...(r ? r.problems.slice(0, 50) : []).map((x) =>
      el("li", { text: x.severity + " " + x.object + ": " + x.message })));
  };
  const follow = async () => {
    while (panel.isConnected) {
      const run = await api("GET", path);
      show(run);
      if (run.state !== "running") return;
      await new Promise((done) => setTimeout(done, 700));
    }
  };
  const guard = (f) => f().catch((e) => { if (!(e instanceof Unauthorized)) status.textContent = e.message; });
  button.addEventListener("click", () => guard(async () => { show(await api("POST", path)); await follow(); }));
  guard(follow);
  return panel;
}

function time(ms) {
  return ms == null ? "–" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function backupView(s) {
  const records = s.topics.reduce((n, t) => n + t.partitions.reduce((m, p) => m + p.records, 0), 0);
  const view = el("div", { class: "card backup" },
    el("dl", { class: "meta" },
      el("dt", { text: "location" }), el("dd", { text: s.uri }),
      el("dt", { text: "created" }), el("dd", { text: time(s.created_at_ms) + " by " + s.created_by }),
      el("dt", { text: "topics" }), el("dd", { text: s.topics.length + " topics, " + records + " records" }),
      el("dt", { text: "incomplete segments" }), el("dd", { text: String(s.incomplete_segments) }),
      el("dt", { text: "encryption" }), el("dd", { text: keyIds(s) })),
    el("div", { class: "legend" },
      el("span", {}, el("span", { class: "swatch data" }), "offsets held"),
      el("span", {}, el("span", { class: "swatch gap" }), "gap"),
      el("span", {}, "seg = segments")));
  for (const t of s.topics) view.append(topicView(t));
  const groups = el("details", {}, el("summary", { text: "Consumer-group snapshots (" + s.groups.length + ")" }));
  for (const g of s.groups) groups.append(el("p", { text: time(g.taken_at_ms) + ": " + (g.groups.join(", ") || "none") }));
  view.append(groups);
  return view;
}

/** The ids of the keys the backup's segments were encrypted with (never the keys). */
function keyIds(s) {
  const ids = new Set(s.topics.flatMap((t) => t.partitions.flatMap((p) => p.key_ids || [])));
  return ids.size ? "key ids " + [...ids].sort().join(", ") + " (restores need the key)" : "none";
}

/** One topic: a timeline of each partition's offsets with its gaps, and a table. */
function topicView(t) {
  const parts = t.partitions;
  const lo = Math.min(...parts.map((p) => p.first_offset));
  const hi = Math.max(...parts.map((p) => p.next_offset));
  const span = Math.max(1, hi - lo);
  const pct = (o) => ((o - lo) / span) * 100;
  const bar = (from, to, fill, title, minWidth) => el("svg:rect", {
    x: pct(from).toFixed(3) + "%", y: "0", height: "16", fill,
    width: Math.max(minWidth, pct(to) - pct(from)).toFixed(3) + "%",
  }, el("svg:title", { text: title }));
  const lanes = el("div", { class: "lanes", role: "img",
    "aria-label": "offsets of " + t.topic + " per partition, " + lo + " to " + hi });
  for (const p of parts) {
    const svg = el("svg:svg", { width: "100%", height: "16", "aria-hidden": "true" },
      bar(p.first_offset, p.next_offset, "#3b7dd8", "partition " + p.partition + ": offsets " + p.first_offset +
        "–" + p.next_offset + ", " + p.records + " records in " + p.segments + " segments, " +
        time(p.min_timestamp) + " – " + time(p.max_timestamp), 0.2));
    for (const g of p.gaps) svg.append(bar(g.from, g.to, "#b3261e", "gap: offsets " + g.from + "–" + g.to, 0.4));
    lanes.append(el("span", { class: "num", text: "p" + p.partition }), svg,
      el("span", { class: "num muted", text: p.segments + " seg" }));
  }
  lanes.append(el("span", {}), el("div", { class: "axis num muted" },
    el("span", { text: String(lo) }), el("span", { text: String(hi) })), el("span", {}));
  const rows = parts.map((p) => el("tr", {},
    el("td", { class: "num", text: p.partition }),
    el("td", { class: "num", text: p.first_offset + "–" + p.next_offset }),
    el("td", { class: "num", text: p.records }),
    el("td", { text: time(p.min_timestamp) + " – " + time(p.max_timestamp) }),
    el("td", { class: "num", text: p.segments }),
    el("td", { class: "num", text: bytes(p.bytes) }),
    el("td", { text: p.gaps.map((g) => g.from + "–" + g.to).join(", ") || "none" })));
  const configs = Object.entries(t.configs || {});
  return el("section", { class: "topic", "data-topic": t.topic, "aria-label": "topic " + t.topic },
    el("h3", { text: t.topic + " · " + parts.length + " partitions" +
      (t.partition_count != null ? " of " + t.partition_count : "") }),
    lanes,
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ...["partition", "offsets", "records", "time range", "segments", "size", "gaps"]
        .map((h, i) => el("th", { class: [0, 1, 2, 4, 5].includes(i) ? "num" : "", text: h })))),
      el("tbody", {}, ...rows))),
    el("details", {}, el("summary", { text: "Topic configs (" + configs.length + ")" }),
      el("dl", { class: "meta" }, ...configs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]))));
}

// ------------------------------------------------------------------ the restore wizard

/** The wizard's state: the backup's summary, the latest plan, the preview and follow runs. */
const wizard = { summary: null, plan: null, previewSeq: 0, timer: null, followSeq: 0, lo: 0, hi: 0 };
const PREVIEW_MS = 350;

async function loadRestore() {
  try {
    const list = await api("GET", "/backups");
    $("restore-error").textContent = "";
    $("restore-empty").hidden = list.length > 0;
    $("restore-form").hidden = list.length === 0;
    const select = $("restore-backup");
    const chosen = select.value;
    select.replaceChildren(...list.map((b) => el("option", { value: String(b.index), text: b.uri })));
    if (chosen && list.some((b) => String(b.index) === chosen)) select.value = chosen;
    if (list.length && (!wizard.summary || wizard.summaryIndex !== select.value)) await chooseBackup();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("restore-error").textContent = "Cannot list backups: " + e.message;
  }
}

/** Reads the chosen backup: its topics become the list to tick and rename. */
async function chooseBackup() {
  const index = $("restore-backup").value;
  wizard.summary = null;
  wizard.plan = null;
  $("restore-result").hidden = true;
  $("restore-topics").replaceChildren(el("p", { class: "muted", text: "Reading the backup…" }));
  $("restore-kept").tBodies[0].replaceChildren();
  try {
    const s = await api("GET", "/backups/" + encodeURIComponent(index));
    if ($("restore-backup").value !== index) return;
    wizard.summary = s;
    wizard.summaryIndex = index;
    const records = s.topics.reduce((n, t) => n + t.partitions.reduce((m, p) => m + p.records, 0), 0);
    $("restore-backup-info").textContent = s.topics.length + " topics, " + records + " records; created " +
      time(s.created_at_ms) + " by " + s.created_by + ".";
    $("restore-topics").replaceChildren(...s.topics.map((t, i) => {
      const id = "restore-topic-" + i;
      const n = t.partitions.reduce((m, p) => m + p.records, 0);
      return el("div", { class: "topic-choice", "data-topic": t.topic },
        el("input", { type: "checkbox", id, checked: "", "data-topic": t.topic, onchange: choicesChanged }),
        el("label", { for: id, class: "inline" }, el("strong", { text: t.topic }),
          el("span", { class: "muted", text: " " + t.partitions.length + " partitions, " + n + " records" })),
        el("label", { for: id + "-as", class: "inline muted", text: "restore as" }),
        el("input", { id: id + "-as", class: "rename", "data-topic": t.topic, placeholder: t.topic,
          spellcheck: "false", autocomplete: "off", oninput: choicesChanged }));
    }));
    if (!s.topics.length) $("restore-topics").replaceChildren(el("p", { class: "muted", text: "This backup holds no topics yet." }));
    setSliderRange();
    schedulePreview();
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("restore-topics").replaceChildren(el("p", { class: "error", text: e.message }));
  }
}

function chosenTopics() {
  return [...document.querySelectorAll("#restore-topics input[type=checkbox]")]
    .filter((c) => c.checked).map((c) => c.dataset.topic);
}

/** `{old: new}` for the ticked topics given a new name. */
function chosenRenames() {
  const chosen = chosenTopics();
  const out = {};
  for (const i of document.querySelectorAll("#restore-topics input.rename")) {
    const v = i.value.trim();
    if (v && v !== i.dataset.topic && chosen.includes(i.dataset.topic)) out[i.dataset.topic] = v;
  }
  return out;
}

/** The chosen topics' partitions in the backup's summary. */
function chosenPartitions() {
  const chosen = chosenTopics();
  return (wizard.summary ? wizard.summary.topics : []).filter((t) => chosen.includes(t.topic))
    .flatMap((t) => t.partitions.map((p) => ({ topic: t.topic, ...p })));
}

/** The slider spans the chosen topics' records, from the oldest timestamp to the newest. */
function setSliderRange() {
  const parts = chosenPartitions().filter((p) => p.min_timestamp != null);
  wizard.lo = parts.length ? Math.min(...parts.map((p) => p.min_timestamp)) : 0;
  wizard.hi = parts.length ? Math.max(...parts.map((p) => p.max_timestamp)) : 0;
  $("restore-slider-min").textContent = parts.length ? iso(wizard.lo) : "";
  $("restore-slider-max").textContent = parts.length ? iso(wizard.hi) : "";
  $("restore-slider").setAttribute("aria-valuetext", $("restore-until").value || "the newest record");
}

function iso(ms) {
  return new Date(ms).toISOString();
}

function sliderTime() {
  const v = Number($("restore-slider").value);
  return Math.round(wizard.lo + (wizard.hi - wizard.lo) * v / 1000);
}

function onSlider() {
  $("restore-until").value = iso(sliderTime());
  $("restore-slider").setAttribute("aria-valuetext", $("restore-until").value);
  schedulePreview();
}

function onUntilTyped() {
  const ms = Date.parse($("restore-until").value.trim());
  if (!Number.isNaN(ms) && wizard.hi > wizard.lo) {
    const v = Math.round((ms - wizard.lo) * 1000 / (wizard.hi - wizard.lo));
    $("restore-slider").value = String(Math.max(0, Math.min(1000, v)));
    $("restore-slider").setAttribute("aria-valuetext", $("restore-until").value);
  }
  schedulePreview();
}

function onPitToggled() {
  const on = $("restore-pit").checked;
  $("restore-pit-controls").hidden = !on;
  if (on && !$("restore-until").value) {
    $("restore-slider").value = "1000";
    $("restore-until").value = iso(wizard.hi);
  }
  schedulePreview();
}

function choicesChanged() {
  wizard.plan = null;
  $("restore-result").hidden = true;
  setSliderRange();
  schedulePreview();
}

/** `a=b, c=d` → {a: b, c: d}; a malformed pair is an error naming the field. */
function pairs(text, field) {
  const out = {};
  for (const part of text.split(",").map((x) => x.trim()).filter(Boolean)) {
    const [a, b, ...rest] = part.split("=").map((x) => x.trim());
    if (!a || !b || rest.length) throw new Error(field + ": “" + part + "” is not OLD=NEW");
    out[a] = b;
  }
  return out;
}

/** The API request the choices make (throws with a message naming a wrong field). */
function restoreRequest() {
  const topics = chosenTopics();
  if (!topics.length) throw new Error("Tick at least one topic to restore.");
  const r = {
    backup: Number($("restore-backup").value),
    topics,
    renames: chosenRenames(),
    partitioning: $("restore-partitioning").value,
    groups: $("restore-groups").checked,
    group_renames: pairs($("restore-group-renames").value, "Group renames"),
    allow_existing: $("restore-allow-existing").checked,
  };
  const moves = pairs($("restore-partition-map").value, "Partition map");
  for (const [from, to] of Object.entries(moves)) {
    if (!/^\d+$/.test(from) || !/^\d+$/.test(to)) throw new Error("Partition map: “" + from + "=" + to + "” is not FROM=TO with partition numbers");
    r.partition_map = r.partition_map || {};
    r.partition_map[from] = Number(to);
  }
  if ($("restore-pit").checked) {
    const u = $("restore-until").value.trim();
    if (!u) throw new Error("Point in time: give a time, or untick it.");
    r.until = u;
  }
  const brokers = $("restore-target").value.split(",").map((b) => b.trim()).filter(Boolean);
  if (brokers.length) {
    if (!brokers.every((b) => /^[^\s:]+:\d+$/.test(b))) throw new Error("Target brokers: host:port, comma-separated.");
    r.target = { brokers };
  }
  const name = $("restore-name").value.trim();
  if (name) {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error("Pipeline name: letters, digits, “.”, “_” and “-”.");
    r.name = name;
  }
  return r;
}

function schedulePreview() {
  clearTimeout(wizard.timer);
  wizard.timer = setTimeout(preview, PREVIEW_MS);
}

/** Plans with the current choices and shows how many records each partition keeps. */
async function preview() {
  const status = $("restore-kept-status");
  const body = $("restore-kept").tBodies[0];
  let request;
  try {
    request = restoreRequest();
  } catch (e) {
    status.textContent = e.message;
    body.replaceChildren();
    return;
  }
  const seq = ++wizard.previewSeq;
  status.textContent = "Counting the records kept…";
  try {
    const plan = await api("POST", "/restore/plan", JSON.stringify(request), "application/json");
    if (seq !== wizard.previewSeq) return;
    const target = Object.fromEntries(plan.topics.map((t) => [t.topic, t.target]));
    const rows = chosenPartitions().map((p) => {
      const row = plan.partitions.find((x) => x.topic === target[p.topic] && x.partition === p.partition);
      return el("tr", { "data-topic": p.topic, "data-partition": String(p.partition) },
        el("td", { text: p.topic }), el("td", { class: "num", text: p.partition }),
        el("td", { class: "num kept", text: row ? row.records : 0 }),
        el("td", { class: "num", text: p.records }),
        el("td", { text: row && row.max_timestamp != null ? iso(row.max_timestamp) : "–" }));
    });
    body.replaceChildren(...rows);
    const kept = plan.total_records;
    const all = chosenPartitions().reduce((n, p) => n + p.records, 0);
    status.textContent = (request.until ? "Until " + request.until + ": " : "Everything: ") +
      kept + " of " + all + " records kept.";
  } catch (e) {
    if (e instanceof Unauthorized || seq !== wizard.previewSeq) return;
    status.textContent = "Cannot count: " + e.message;
    body.replaceChildren();
  }
}

/** The plan: what the dry run prints, before anything runs. */
async function planRestore(event) {
  event.preventDefault();
  $("restore-error").textContent = "";
  let request;
  try {
    request = restoreRequest();
  } catch (e) {
    $("restore-error").textContent = e.message;
    return;
  }
  $("restore-plan").disabled = true;
  $("restore-plan").textContent = "Planning…";
  try {
    const plan = await api("POST", "/restore/plan", JSON.stringify(request), "application/json");
    plan.target = request.target;
    showPlan(plan);
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("restore-error").textContent = "Cannot plan: " + e.message;
  } finally {
    $("restore-plan").disabled = false;
    $("restore-plan").textContent = "Plan the restore (dry run)";
  }
}

function showPlan(plan) {
  wizard.plan = plan;
  wizard.followSeq++;
  $("restore-result").hidden = false;
  $("restore-progress-panel").hidden = true;
  $("restore-result-title").textContent = "Plan: " + plan.name + " (dry run: nothing was written)";
  $("restore-summary").textContent = plan.total_records + " record(s) in " + plan.partitions.length +
    " partition(s) would be restored" + (plan.until_ms != null ? ", up to " + iso(plan.until_ms) : "") + ".";
  const refusals = plan.targets.refusals;
  $("restore-refusals").replaceChildren(...refusals.map((r) => el("li", { text: r })));
  $("restore-targets").tBodies[0].replaceChildren(...plan.targets.topics.map((t) => el("tr", { "data-topic": t.topic },
    el("td", { text: t.topic }), el("td", { text: t.exists ? "yes" : "no" }),
    el("td", { class: "num", text: t.exists ? t.partitions : "–" }),
    el("td", { class: "num", text: t.exists ? t.total_records : "–" }),
    el("td", { class: /REFUSED/.test(t.note) ? "error" : "", text: t.note }))));
  $("restore-partitions").tBodies[0].replaceChildren(...plan.partitions.map((p) => el("tr",
    { "data-topic": p.topic, "data-partition": String(p.partition) },
    el("td", { text: p.topic }), el("td", { class: "num", text: p.partition }),
    el("td", { class: "num records", text: p.records }),
    el("td", { class: "num", text: p.first_offset != null ? p.first_offset + "..=" + p.last_offset : "–" }),
    el("td", { text: p.min_timestamp != null ? iso(p.min_timestamp) : "–" }),
    el("td", { text: p.max_timestamp != null ? iso(p.max_timestamp) : "–" }))));
  const groups = plan.groups.map((g) => el("li", { text: g.group + (g.target !== g.group ? " → " + g.target : "") +
    " (" + g.partitions + " partitions): " + (g.restored ? "offsets committed, translated" : "not restored (tick “Restore consumer-group offsets”)") }));
  $("restore-groups-plan").replaceChildren(groups.length
    ? el("div", {}, el("h4", { text: "Consumer groups" }), el("ul", {}, ...groups))
    : el("p", { class: "muted", text: "The backup holds no consumer-group offsets for these topics." }));
  $("restore-pipeline").textContent = JSON.stringify(plan.pipeline, null, 2);
  const run = $("restore-run");
  run.disabled = refusals.length > 0 || plan.total_records === 0;
  run.title = refusals.length ? "The restore would be refused: see above" : plan.total_records === 0 ? "Nothing to restore" : "";
  $("restore-result-title").focus();
}

/** Submits the plan's pipeline through the pipeline API, then follows it. */
async function runRestore() {
  const plan = wizard.plan;
  if (!plan) return;
  $("restore-run").disabled = true;
  $("restore-progress-panel").hidden = false;
  $("restore-progress-text").textContent = "Submitting pipeline " + plan.name + "…";
  try {
    await api("PUT", "/pipelines/" + encodeURIComponent(plan.name), JSON.stringify(plan.pipeline, null, 2), "application/json");
  } catch (e) {
    if (!(e instanceof Unauthorized)) $("restore-progress-text").textContent = "Not started: " + e.message;
    $("restore-run").disabled = false;
    return;
  }
  followRestore(plan);
}

/** Polls the pipeline's state and the target topics: records written against the plan, ETA. */
async function followRestore(plan) {
  const seq = ++wizard.followSeq;
  const bar = $("restore-progress");
  const text = $("restore-progress-text");
  const topics = plan.targets.topics.map((t) => t.topic);
  const target = plan.target ? { target: plan.target } : {};
  const baseline = plan.targets.topics.reduce((n, t) => n + (t.exists ? t.total_records : 0), 0);
  const planned = plan.total_records;
  const samples = [];
  bar.max = Math.max(1, planned);
  while (seq === wizard.followSeq) {
    try {
      const status = await api("GET", "/pipelines/" + encodeURIComponent(plan.name) + "/status");
      const counts = await api("POST", "/restore/progress", JSON.stringify({ topics, ...target }), "application/json");
      if (seq !== wizard.followSeq) return;
      const now = topics.reduce((n, t) => n + (counts[t] ? counts[t].records : 0), 0);
      const written = Math.max(0, Math.min(planned, now - baseline));
      samples.push({ t: performance.now(), written });
      if (samples.length > 20) samples.shift();
      const first = samples[0];
      const rate = samples.length > 1 ? (written - first.written) * 1000 / (performance.now() - first.t) : 0;
      bar.value = written;
      const pct = planned ? Math.floor(written * 100 / planned) : 100;
      let line = status.state + ": " + written + " of " + planned + " records written (" + pct + "%)";
      if (status.state === "FINISHED") {
        text.textContent = "Finished: " + written + " of " + planned + " records written to " + topics.join(", ") + ".";
        text.className = written >= planned ? "ok" : "error";
        return;
      }
      if (status.state === "FAILED") {
        text.textContent = "FAILED after " + written + " of " + planned + " records: " + (status.error || "see the pipeline's card");
        text.className = "error";
        return;
      }
      if (rate > 0) line += ", " + formatRate(rate) + " rec/s, about " + duration((planned - written) / rate) + " left";
      else if (written < planned) line += ", ETA once records arrive";
      text.textContent = line + ".";
      text.className = "";
    } catch (e) {
      if (e instanceof Unauthorized) return;
      text.textContent = "Cannot follow the restore: " + e.message;
    }
    await new Promise((done) => setTimeout(done, 1000));
  }
}

function duration(seconds) {
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function editChoices() {
  wizard.followSeq++;
  $("restore-result").hidden = true;
  $("restore-backup").focus();
}

// ------------------------------------------------------------------ start

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("new-pipeline").addEventListener("click", () => openEditor(null));
  $("editor-validate").addEventListener("click", validate);
  $("editor-form").addEventListener("submit", save);
  $("editor-cancel").addEventListener("click", closeEditor);
  $("editor-text").addEventListener("input", () => drawGutter(null));
  $("editor-text").addEventListener("scroll", () => { $("editor-gutter").scrollTop = $("editor-text").scrollTop; });
  $("backup-select").addEventListener("change", showBackup);
  $("backup-refresh").addEventListener("click", showBackup);
  $("backup-add-form").addEventListener("submit", addBackup);
  $("backup-remove").addEventListener("click", removeBackup);
  $("restore-backup").addEventListener("change", chooseBackup);
  $("restore-pit").addEventListener("change", onPitToggled);
  $("restore-slider").addEventListener("input", onSlider);
  $("restore-until").addEventListener("input", onUntilTyped);
  for (const id of ["restore-partitioning", "restore-groups", "restore-allow-existing"]) $(id).addEventListener("change", choicesChanged);
  for (const id of ["restore-partition-map", "restore-group-renames", "restore-name", "restore-target"]) $(id).addEventListener("input", choicesChanged);
  $("restore-form").addEventListener("submit", planRestore);
  $("restore-run").addEventListener("click", runRestore);
  $("restore-edit").addEventListener("click", editChoices);
  window.addEventListener("hashchange", route);
  route();
  setInterval(refreshPipelines, POLL_MS);
});

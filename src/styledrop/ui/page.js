// The studio page: talks to the server's JSON API, shows each error beside the control that caused it.
"use strict";
const $ = (id) => document.getElementById(id);
const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const TOKEN = meta("styledrop-token");
const DEFAULTS = {lambda_a: Number(meta("styledrop-lambda-a")), lambda_b: Number(meta("styledrop-lambda-b"))};
const SECTION_OF_JOB = {"round 1": "round1", "subject": "subject"};  // anything else: a later round
let polling = null, lastJob = null, runId = null;
const picks = new Set();

function showError(where, message) {
  // where: refs | round1 | generate | restyle | rounds | subject | runs; null = the top of the page
  $(where ? `err-${where}` : "error").textContent = message || "";
}

async function call(url, options = {}) {
  const method = options.method || "GET";
  const headers = Object.assign({}, options.headers || {}, method === "GET" ? {} : {"X-Styledrop-Token": TOKEN});
  const response = await fetch(url, Object.assign({}, options, {headers}));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function postJSON(url, data) {
  return call(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(data)});
}

function thumbs(id, urls) {
  const box = $(id);
  if (box.dataset.urls === urls.join(",")) return;
  box.dataset.urls = urls.join(",");
  box.replaceChildren(...urls.map((url, i) => {
    const img = document.createElement("img");
    img.className = "thumb"; img.alt = `${id} ${i + 1}`; img.src = url;
    return img;
  }));
}

function duration(s) { return s < 90 ? `${Math.ceil(s)} s` : `${Math.ceil(s / 60)} min`; }
function seconds(s) { return s === null || s === undefined ? "" : ` · ${duration(s)} left`; }

function jobLine(job) {
  const loss = job.loss === null || job.loss === undefined ? "" : ` loss ${job.loss.toFixed(3)}`;
  if (job.state === "failed") return `${job.kind} failed: ${job.error}`;
  if (job.state === "cancelled") return `${job.kind} cancelled at step ${job.step}; the previous adapter is kept`;
  if (job.state === "interrupted") return `${job.kind} interrupted at step ${job.step}/${job.total}; start it again below the queue`;
  if (job.state === "done") return `${job.kind} done${loss}`;
  if (job.state === "queued") return `${job.kind}: waiting in the queue`;
  return `${job.kind}: step ${job.step}/${job.total}${loss}`;
}

function showJob(job) {
  // each kind of training shows its progress (and its error) in its own section
  const section = SECTION_OF_JOB[job.kind] || "rounds";
  const where = {round1: ["progress", "status"], subject: ["subject-progress", "subject-status"],
                 rounds: ["round-progress", "round-status"]}[section];
  $(where[0]).max = job.total; $(where[0]).value = job.step;
  $(where[1]).textContent = jobLine(job);
  $(where[1]).dataset.state = job.state;
  if (job.state === "failed") showError(section, job.error);
}

function showQueue(s) {
  const box = $("queue");
  if (!s.running && !s.queue.length) { box.replaceChildren(Object.assign(document.createElement("span"), {className: "hint", textContent: "idle"})); return; }
  const list = document.createElement("ol");
  list.start = 0;
  for (const job of [s.running, ...s.queue].filter(Boolean)) {
    const item = document.createElement("li");
    item.dataset.state = job.state;
    const what = job.state === "running" ? `running: ${job.kind}` + (job.kind === "generate" || job.kind === "restyle"
      ? ` (${job.total} pictures)` : ` step ${job.step}/${job.total}`) : `waiting #${job.position}: ${job.kind}`;
    item.textContent = what + seconds(job.seconds_left);
    list.appendChild(item);
  }
  const total = document.createElement("div");
  total.className = "hint"; total.id = "queue-left";
  total.textContent = s.seconds_left === null ? "time left: measured after the first job" : `time left for all: ${duration(s.seconds_left)}`;
  box.replaceChildren(list, total);
}

function showTrainings(s) {
  const list = $("trainings");
  list.replaceChildren(...s.trainings.slice().reverse().map((t) => {
    const item = document.createElement("li");
    item.textContent = `#${t.id} ${t.kind}: ${t.state}` + (t.state === "done" ? "" : ` (step ${t.step}/${t.total})`) + " ";
    if (["interrupted", "cancelled", "failed"].includes(t.state)) {
      const again = document.createElement("button");
      again.type = "button"; again.className = "restart"; again.dataset.id = t.id; again.textContent = "Start again";
      item.appendChild(again);
    }
    return item;
  }));
}

function applyStatus(s) {
  $("busy").textContent = s.busy ? `busy: ${s.busy}` : "";
  $("run-id").textContent = s.run;
  const haveStyle = s.rounds.length > 0 || [s.running, ...s.queue].some((j) => j && j.kind === "round 1");
  $("generate-btn").disabled = !haveStyle;
  $("restyle-btn").disabled = !haveStyle;
  $("clip-pick-btn").hidden = !s.scorer;
  thumbs("refs", s.references);
  thumbs("subject-refs", s.subject_images);
  const select = $("style-round");
  const wanted = s.rounds.map(String).join(",");
  if (select.dataset.rounds !== wanted) {
    select.replaceChildren(...s.rounds.map((r) => new Option(`round ${r}`, String(r))));
    if (s.rounds.length) select.value = String(s.rounds[s.rounds.length - 1]);
    select.dataset.rounds = wanted;
  }
  $("download").hidden = !s.rounds.includes(1);
  $("round2-btn").textContent = `Train round ${s.round + 1}`;
  $("round2-btn").disabled = !s.round || !picks.size;
  $("round-downloads").replaceChildren(...s.rounds.filter((r) => r > 1).map((r) => {
    const item = document.createElement("li");
    const link = Object.assign(document.createElement("a"), {href: `/api/adapter?round=${r}`, textContent: `Download round ${r} adapter`});
    link.setAttribute("download", "");
    item.appendChild(link);
    return item;
  }));
  if (!s.job || s.job.kind !== "round 1") {  // what section 2 holds after a reload: the round 1 there is
    $("status").textContent = s.rounds.includes(1) ? `round 1 trained (${s.adapter ? "latest: " + s.adapter : ""})` : "no adapter yet";
  }
  $("subject-status").textContent = s.subject && !(s.job && s.job.kind === "subject" && s.job.state !== "done")
    ? `trained: "${s.subject}"` : $("subject-status").textContent;
  $("subject-download").hidden = !s.subject;
  const runningTraining = s.running && !["generate", "restyle"].includes(s.running.kind);
  $("cancel-btn").hidden = !runningTraining;
  if (s.job) {
    showJob(s.job);
    if (lastJob && lastJob.state === "running" && s.job.state === "done") showError(SECTION_OF_JOB[s.job.kind] || "rounds", "");
    lastJob = s.job;
  }
  showQueue(s);
  showTrainings(s);
}

function caption(im) {
  // every setting needed to make the picture again
  const parts = [`seed ${im.seed}`, `round ${im.round}`];
  if (im.lambda_a !== undefined) parts.push(`λA ${im.lambda_a}`, `λB ${im.lambda_b}`, `${im.steps} steps`);
  if (im.subject) parts.push(`γ ${im.gamma}`);
  if (im.strength !== undefined) parts.push(`strength ${im.strength}`);
  return parts.join(" · ");
}

function roundGroup(round) {
  let group = document.querySelector(`details.round[data-round="${round}"]`);
  if (!group) {
    group = document.createElement("details");
    group.className = "round"; group.dataset.round = round;
    const summary = document.createElement("summary");
    group.appendChild(summary);
    // newest round first; only the newest is open, the older ones fold away
    const later = [...document.querySelectorAll("details.round")].find((g) => Number(g.dataset.round) < round);
    $("gallery").insertBefore(group, later || null);
    document.querySelectorAll("details.round").forEach((g) => { g.open = g === $("gallery").firstElementChild; });
  }
  return group;
}

function addImages(images) {
  // grouped by round, then one group per batch, newest batch first, images in order within it
  for (const im of images) {
    let group = document.querySelector(`.batch[data-batch="${im.batch}"]`);
    if (!group) {
      const round = roundGroup(im.round);
      group = document.createElement("div");
      group.className = "batch"; group.dataset.batch = im.batch;
      const head = document.createElement("h3");
      head.textContent = `“${im.prompt}” · round ${im.round}${im.subject ? " + subject" : ""}` +
        (im.input ? ` · restyled at strength ${im.strength}` : "");
      group.appendChild(head);
      if (im.input) {  // the input beside its restyled versions
        const fig = document.createElement("figure");
        fig.className = "input";
        const img = Object.assign(document.createElement("img"), {src: im.input, alt: "input"});
        fig.append(img, Object.assign(document.createElement("figcaption"), {textContent: "input"}));
        group.appendChild(fig);
      }
      round.insertBefore(group, round.querySelector(".batch"));
    }
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = im.url; img.alt = im.prompt; img.dataset.caption = `${im.prompt} · ${caption(im)}`;
    img.addEventListener("click", () => {
      $("lightbox-img").src = im.url; $("lightbox-caption").textContent = img.dataset.caption; $("lightbox").hidden = false;
    });
    const cap = document.createElement("figcaption");
    const label = document.createElement("label");
    const box = Object.assign(document.createElement("input"), {type: "checkbox", className: "pick", checked: picks.has(im.id)});
    box.dataset.id = im.id;
    label.append(box, ` #${im.id}`);
    cap.append(label, ` ${caption(im)}`);
    if (im.clip_t !== undefined) cap.append(" · ", Object.assign(document.createElement("span"), {className: "clip-t", textContent: `CLIP-T ${im.clip_t.toFixed(3)}`}));
    fig.append(img, cap);
    group.appendChild(fig);
  }
  document.querySelectorAll("details.round").forEach((g) => {
    const n = g.querySelectorAll("input.pick").length;
    g.querySelector("summary").textContent = `Round ${g.dataset.round}: ${n} picture${n === 1 ? "" : "s"}`;
  });
}

async function restore() {
  const s = await call("/api/state");
  if (runId !== s.run) { $("descriptor").value = ""; $("content").value = ""; }
  runId = s.run;
  $("descriptor").value = $("descriptor").value || s.descriptor;
  $("content").value = $("content").value || s.content;
  picks.clear(); s.picks.forEach((i) => picks.add(i));
  $("gallery").replaceChildren();
  addImages(s.images);
  $("picked").textContent = `${picks.size} ticked`;
  $("run-list").replaceChildren(...s.runs.filter((r) => r.id !== s.run).map((r) => new Option(
    `${r.id} · ${r.descriptor || "no style yet"} · ${r.rounds.length} round(s) · ${r.images} pictures`, r.id)));
  $("open-run-btn").disabled = !$("run-list").options.length;
  applyStatus(s);
  poll(true);
}

let pollDelay = 400;
function poll(soon = false) {
  // always following the server, so a second tab sees what the first one started: fast while anything runs
  clearTimeout(polling);
  polling = setTimeout(async () => {
    let busy = true;
    try {
      const s = await call("/api/status");
      if (s.run !== runId) { await restore(); return; }  // another tab opened another run
      applyStatus(s);
      busy = Boolean(s.running || s.queue.length);
      showError(null, "");
    } catch (e) { showError(null, `lost the server: ${e.message}`); }
    pollDelay = busy ? 400 : 2000;
    poll();
  }, soon ? 50 : pollDelay);
}

function uploader(inputId, clearId, kind, notesId, where) {
  $(inputId).addEventListener("change", async () => {
    showError(where, "");
    const form = new FormData();
    for (const f of $(inputId).files) form.append("files", f);
    try {
      const r = await call(`/api/uploads/${kind}`, {method: "POST", body: form});
      $(notesId).textContent = r.notes.length ? r.notes.join("\n") : "";
    } catch (e) { showError(where, e.message); }
    $(inputId).value = "";
    applyStatus(await call("/api/status"));
  });
  $(clearId).addEventListener("click", async () => {
    await call(`/api/uploads/${kind}`, {method: "DELETE"}).catch((e) => showError(where, e.message));
    $(notesId).textContent = "";
    applyStatus(await call("/api/status"));
  });
}
uploader("ref-files", "clear-refs", "references", "ref-notes", "refs");
uploader("subject-files", "clear-subject", "subject", "subject-notes", "subject");

async function startJob(url, data, where) {
  showError(where, "");
  try { await postJSON(url, data); poll(true); } catch (e) { showError(where, e.message); }
}

$("train-btn").addEventListener("click", () => startJob("/api/train", {
  descriptor: $("descriptor").value, content: $("content").value, steps: Number($("steps").value)}, "round1"));
$("clip-pick-btn").addEventListener("click", async () => {
  try {
    const r = await postJSON("/api/picks/clip", {});
    picks.clear(); r.picks.forEach((i) => picks.add(i));
    document.querySelectorAll("input.pick").forEach((box) => { box.checked = picks.has(Number(box.dataset.id)); });
    $("picked").textContent = `${picks.size} ticked`;
    applyStatus(await call("/api/status"));
  } catch (e) { showError("generate", e.message); }
});
$("round2-btn").addEventListener("click", () => startJob("/api/round2", {ids: [...picks], steps: Number($("round2-steps").value)}, "rounds"));
$("subject-train-btn").addEventListener("click", () => startJob("/api/train-subject", {
  token: $("subject-token").value, class_noun: $("subject-class").value, steps: Number($("subject-steps").value)}, "subject"));
$("cancel-btn").addEventListener("click", async () => {
  await call("/api/cancel", {method: "POST"}).catch((e) => showError("round1", e.message));
});
$("trainings").addEventListener("click", (event) => {
  if (event.target.classList.contains("restart")) startJob("/api/restart", {id: Number(event.target.dataset.id)}, null);
});
$("new-run-btn").addEventListener("click", async () => {
  showError("runs", "");
  try { await postJSON("/api/runs", {}); await restore(); } catch (e) { showError("runs", e.message); }
});
$("open-run-btn").addEventListener("click", async () => {
  showError("runs", "");
  try { await postJSON("/api/runs/open", {id: $("run-list").value}); await restore(); } catch (e) { showError("runs", e.message); }
});

function lambdas(values) {
  for (const key of ["lambda_a", "lambda_b"]) {
    const id = key.replace("_", "-");
    if (values) $(id).value = values[key];
    $(`${id}-value`).textContent = Number($(id).value).toFixed(1);
  }
}
$("lambda-a").addEventListener("input", () => lambdas());
$("lambda-b").addEventListener("input", () => lambdas());
$("reset-lambdas").addEventListener("click", () => lambdas(DEFAULTS));
lambdas(DEFAULTS);

$("generate-btn").addEventListener("click", async () => {
  $("generating").hidden = false;
  $("generate-status").textContent = `generating ${$("n").value} images (waits its turn in the queue)…`;
  showError("generate", "");
  poll(true);
  try {
    const round = $("style-round").value;
    const r = await postJSON("/api/generate", {prompt: $("prompt").value, n: Number($("n").value),
      seed: Number($("seed").value), subject: $("use-subject").checked, gamma: Number($("gamma").value),
      lambda_a: Number($("lambda-a").value), lambda_b: Number($("lambda-b").value),
      style_round: round ? Number(round) : null});
    addImages(r.images);
    $("generate-status").textContent = "";
  } catch (e) { showError("generate", e.message); $("generate-status").textContent = ""; }
  $("generating").hidden = true;
  applyStatus(await call("/api/status"));
});

$("strength").addEventListener("input", () => { $("strength-value").textContent = Number($("strength").value).toFixed(2); });
$("restyle-btn").addEventListener("click", async () => {
  const file = $("restyle-file").files[0];
  showError("restyle", "");
  if (!file) { showError("restyle", "choose a picture to restyle first"); return; }
  $("restyling").hidden = false;
  const form = new FormData();
  form.append("file", file);
  form.append("strength", $("strength").value);
  form.append("n", $("restyle-n").value);
  form.append("seed", $("seed").value);
  form.append("prompt", $("restyle-content").value);
  if ($("style-round").value) form.append("style_round", $("style-round").value);
  poll(true);
  try {
    const r = await call("/api/restyle", {method: "POST", body: form});
    addImages(r.images);
  } catch (e) { showError("restyle", e.message); }
  $("restyling").hidden = true;
});

$("gallery").addEventListener("change", async (event) => {
  if (!event.target.classList.contains("pick")) return;
  const id = Number(event.target.dataset.id);
  if (event.target.checked) picks.add(id); else picks.delete(id);
  $("picked").textContent = `${picks.size} ticked`;
  await postJSON("/api/picks", {ids: [...picks]}).catch((e) => showError("rounds", e.message));
  applyStatus(await call("/api/status"));
});
$("lightbox").addEventListener("click", () => { $("lightbox").hidden = true; });
document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("lightbox").hidden = true; });

restore().catch((e) => showError(null, e.message));

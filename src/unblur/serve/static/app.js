// The unblur page: pick a photo, send its bytes to /api/deblur, show before/after.
// While the server works, the progress bar follows /api/progress (network passes done of total: tiles, or a
// diffusion model's sampling steps over all the samples it averages).
"use strict";
const $ = (id) => document.getElementById(id);
let photo = null;
let urls = [];
let generative = []; // diffusion models: they take steps, a seed and a number of samples to average

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function choose(file) {
  if (!file) return;
  photo = file;
  $("chosen").textContent = `${file.name} (${(file.size / 1048576).toFixed(1)} MB)`;
  $("go").disabled = false;
  status("");
}

async function loadModels() {
  const res = await fetch("/api/models");
  const info = await res.json();
  const speed = info.speed || {};
  for (const name of info.models) {
    const opt = document.createElement("option");
    opt.value = name;
    opt.textContent = speed[name] ? `${name} — ${speed[name]}` : name;
    if (name === info.default) opt.selected = true;
    $("model").appendChild(opt);
  }
  generative = info.generative || [];
  showOptions();
}

function showOptions() {
  $("diffusion").hidden = !generative.includes($("model").value);
}

function setSlider(value) {
  $("afterclip").style.clipPath = `inset(0 ${100 - value}% 0 0)`;
  $("handle").style.left = `${value}%`;
}

function newJobId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Ask the server how far job `job` is, every 250 ms, and show it on `bar` (indeterminate until the
// number of passes is known; `unit`: what a pass is). Returns a function that stops the polling.
function followProgress(job, bar, started, unit) {
  let stopped = false;
  let timer = null;
  const poll = async () => {
    try {
      const res = await fetch(`/api/progress?job=${job}`, { cache: "no-store" });
      const p = res.ok ? await res.json() : null;
      // a poll still in flight when the job ended must not overwrite the finished bar and status
      if (p && !stopped) {
        const seconds = ((Date.now() - started) / 1000).toFixed(0);
        if (p.total > 0) {
          bar.max = p.total;
          bar.value = p.done;
          status(p.total > 1 ? `Deblurring… ${p.done} of ${p.total} ${unit}, ${seconds} s` : `Deblurring… ${seconds} s`);
        } else {
          status(p.state === "queued" ? `Waiting for the server… ${seconds} s` : `Deblurring… ${seconds} s`);
        }
      }
    } catch (e) { /* a missed poll: the next one will do */ }
    if (!stopped) timer = setTimeout(poll, 250);
  };
  poll();
  return () => { stopped = true; clearTimeout(timer); };
}

function deblur() {
  if (!photo) return;
  $("go").disabled = true;
  const bar = $("progress");
  bar.hidden = false;
  bar.max = 100;
  bar.value = 0;
  const xhr = new XMLHttpRequest();
  const job = newJobId();
  const query = new URLSearchParams({ model: $("model").value, name: photo.name, job });
  const diffusion = generative.includes($("model").value);
  if (diffusion) {
    if ($("steps").value) query.set("steps", $("steps").value);
    query.set("seed", $("seed").value || "0");
    const samples = parseInt($("samples").value || "1", 10);
    if (samples > 1) { query.set("samples", String(samples)); query.set("mean", "1"); }
  }
  xhr.open("POST", `/api/deblur?${query}`);
  xhr.responseType = "blob";
  const started = Date.now();
  let stopFollowing = () => {};
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) { bar.value = (100 * e.loaded) / e.total; status(`Uploading ${bar.value.toFixed(0)}%`); }
  };
  xhr.upload.onload = () => {
    bar.removeAttribute("value"); // indeterminate until the server says how many passes it makes
    stopFollowing = followProgress(job, bar, started, diffusion ? "steps" : "tiles");
  };
  xhr.onloadend = async () => {
    stopFollowing();
    $("go").disabled = false;
    if (xhr.status !== 200) {
      bar.hidden = true;
      let message = `Failed (HTTP ${xhr.status || "no answer"})`;
      try { message = JSON.parse(await xhr.response.text()).error || message; } catch (e) { /* keep the generic text */ }
      status(message, true);
      return;
    }
    urls.forEach(URL.revokeObjectURL);
    urls = [URL.createObjectURL(photo), URL.createObjectURL(xhr.response)];
    $("before").src = urls[0];
    $("after").src = urls[1];
    const link = $("download");
    link.href = urls[1];
    link.download = photo.name.replace(/\.[^.]*$/, "") + "-unblurred.png";
    $("size").textContent = xhr.getResponseHeader("X-Image-Size") || "";
    // finished: a full bar of the passes the server made (a fast job can end before any poll saw its total)
    const passes = parseInt(xhr.getResponseHeader("X-Passes") || "0", 10);
    if (passes > 0) bar.max = passes;
    bar.value = bar.max;
    $("result").hidden = false;
    setSlider($("slider").value);
    status(`Done in ${xhr.getResponseHeader("X-Seconds")} s`);
  };
  xhr.send(photo);
}

$("file").addEventListener("change", (e) => choose(e.target.files[0]));
$("go").addEventListener("click", deblur);
$("model").addEventListener("change", showOptions);
$("slider").addEventListener("input", (e) => setSlider(e.target.value));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files[0]); });
loadModels().catch(() => status("Cannot reach the server.", true));

// The explorer page: every picture comes from the local server's JSON API (/api/...).
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
let info = null;
let z = [];

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

// One request in flight per view; while it runs, only the newest wish is kept, so dragging never queues stale work.
function coalesced(send) {
  let busy = false, next = null;
  return function request(arg) {
    next = arg;
    if (busy) return;
    busy = true;
    const now = next;
    next = null;
    send(now).catch((e) => console.error(e)).finally(() => {
      busy = false;
      if (next !== null) request(next);
    });
  };
}

const decodeZ = coalesced(async (vector) => {
  const t0 = performance.now();
  const answer = await api("/api/decode", {z: vector});
  $("decoded").src = answer.image;
  $("latency").textContent = `decoded in ${(performance.now() - t0).toFixed(0)} ms`;
});

function shownUnits() {
  return $("unit-choice").value === "all" ? [...Array(info.latent_dim).keys()] : info.units_by_activity.slice(0, 10);
}

function renderSliders() {
  const box = $("sliders");
  box.replaceChildren();
  for (const u of shownUnits()) {
    const label = document.createElement("label");
    label.textContent = `z${u}`;
    const slider = document.createElement("input");
    Object.assign(slider, {type: "range", min: -3, max: 3, step: 0.01, value: z[u], id: `unit-${u}`});
    const value = document.createElement("span");
    value.textContent = z[u].toFixed(2);
    slider.addEventListener("input", () => {
      z[u] = Number(slider.value);
      value.textContent = z[u].toFixed(2);
      decodeZ(z.slice());
    });
    box.append(label, slider, value);
  }
}

function setZ(vector) {
  z = vector.slice();
  renderSliders();
  decodeZ(z.slice());
}

function setupPad() {
  $("pad-panel").hidden = false;
  const canvas = $("pad"), ctx = canvas.getContext("2d");
  const points = info.points || [];
  const reach = Math.max(3, ...points.map((p) => Math.max(Math.abs(p[0]), Math.abs(p[1])))) * 1.05;
  const toPixel = (v, size, flip) => (flip ? (reach - v) : (v + reach)) / (2 * reach) * size;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  points.forEach((p, i) => {
    ctx.fillStyle = info.labels ? COLOURS[info.labels[i] % COLOURS.length] : "#1f77b4";
    ctx.fillRect(toPixel(p[0], canvas.width, false) - 1.5, toPixel(p[1], canvas.height, true) - 1.5, 3, 3);
  });
  if (info.labels) {
    const names = info.classes || [...Array(COLOURS.length).keys()].map(String);
    const used = [...new Set(info.labels)].sort((a, b) => a - b);
    // text nodes, never innerHTML: class names are folder names, which may hold markup
    $("legend").replaceChildren(...used.flatMap((l, i) => {
      const item = document.createElement("span");
      item.style.color = COLOURS[l % COLOURS.length];
      item.textContent = `■ ${names[l] ?? l}`;
      return i ? [document.createTextNode(" "), item] : [item];
    }));
  }
  const decodePad = coalesced(async (vector) => { $("pad-image").src = (await api("/api/decode", {z: vector})).image; });
  canvas.addEventListener("pointermove", (event) => {
    const r = canvas.getBoundingClientRect();
    const x = (event.clientX - r.left) / r.width * 2 * reach - reach;
    const y = reach - (event.clientY - r.top) / r.height * 2 * reach;
    decodePad([x, y]);
  });
}

function readFile(input) {
  return new Promise((resolve, reject) => {
    const file = input.files[0];
    if (!file) return resolve(null);
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

let ends = null;

async function encodeEnd(indexBox, fileBox) {
  const uri = await readFile(fileBox);
  return api("/api/encode", uri ? {image: uri} : {index: Number(indexBox.value)});
}

async function loadEnds() {
  const [a, b] = await Promise.all([encodeEnd($("interp-a"), $("interp-file-a")), encodeEnd($("interp-b"), $("interp-file-b"))]);
  $("interp-start").src = a.image;
  $("interp-end").src = b.image;
  ends = [a.mean, b.mean];
  interpolate();
}

const decodeInterp = coalesced(async (vector) => { $("interp-image").src = (await api("/api/decode", {z: vector})).image; });

function interpolate() {
  if (!ends) return;
  const t = Number($("interp-t").value);
  decodeInterp(ends[0].map((a, i) => (1 - t) * a + t * ends[1][i]));
}

async function upload() {
  $("upload-error").textContent = "";
  try {
    const answer = await api("/api/encode", {image: await readFile($("upload"))});
    $("upload-input").src = answer.input;
    $("upload-recon").src = answer.image;
    const rows = answer.mean.map((m, u) => `<tr><td>z${u}</td><td>${m.toFixed(3)}</td><td>${answer.std[u].toFixed(3)}</td></tr>`);
    $("posterior").tBodies[0].innerHTML = rows.join("");
  } catch (e) {
    $("upload-error").textContent = e.message;
  }
}

async function main() {
  info = await api("/api/info");
  $("about").textContent = `${info.latent_dim} latent units, images ${info.shape.join("×")}, ${info.test_images} test images`;
  for (const box of [$("interp-a"), $("interp-b")]) box.max = Math.max(0, info.test_images - 1);
  if (info.latent_dim === 2) setupPad();
  $("unit-choice").addEventListener("change", renderSliders);
  $("zero").addEventListener("click", () => setZ(new Array(info.latent_dim).fill(0)));
  $("sample").addEventListener("click", async () => {
    const answer = await api("/api/sample", {temperature: Number($("temperature").value)});
    $("sampled").src = answer.image;
    setZ(answer.z);
  });
  for (const id of ["interp-a", "interp-b", "interp-file-a", "interp-file-b"]) $(id).addEventListener("change", loadEnds);
  $("interp-t").addEventListener("input", interpolate);
  $("upload").addEventListener("change", upload);
  setZ(new Array(info.latent_dim).fill(0));
  if (info.test_images > 1) loadEnds();
}

main();

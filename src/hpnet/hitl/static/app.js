"use strict";
/*
 * hpnet serve: the page. Plain JavaScript, no libraries, no build step. It speaks only to the JSON
 * API of hpnet.hitl.app on its own origin (every request with Content-Type: application/json).
 *
 * Hooks for browser tests (#id, or [data-testid=...] for repeated elements):
 *   #status                          the status line; class "error" after a failed action, "busy" while one runs
 *   #run-name, #run-summary          the run's name and a one-line summary
 * Look
 *   #grid                            the attribute x channel grid; cells [data-testid="cell-K-C"]
 *                                    (K the attribute's index, C the channel id); click selects both
 *   #attribute-view                  the selected attribute: [data-testid="attribute-accuracy"],
 *                                    top channels [data-testid="top-C"], overlays [data-testid="overlay-C-I"]
 *                                    (channel C over image I)
 *   #channel-view                    the selected channel: partners [data-testid="partner-C"]
 *   #accuracy-table                  rows [data-testid="accuracy-<attribute>"]
 * Perturb
 *   #network                         network selector (shown only with more than one network)
 *   [data-testid="switch-C"]         a checkbox per channel: checked = on, unchecked = switched off
 *   #all-on, #semantic-count + #semantic-first, #top-count + #top-of-selected
 *   #tone-target ("all" or an attribute), #tone-n, #tone-beta (range inputs, listen to "input"), #tone-reset
 *   #prediction                      formula prediction; rows [data-testid="predict-<attribute>"]
 *   #apply, #apply-result            rows [data-testid="apply-<attribute>"]; cells carry data-field (the API's
 *                                    field: change, logit_change, abs_logit_change, accuracy_before,
 *                                    accuracy_after, accuracy_change, flipped) and data-value (the raw number)
 *   #flipped                         flipped images, [data-testid="flipped-I-<attribute>"]
 *   #export-name, #export, #export-path
 * Predict, then see
 *   #trial-mode, #trial-network, #new-trial, #trial-description, #trial-network-shown ("hidden" when blind)
 *   #trial-form                      rows [data-testid="form-<attribute>"] with radios
 *                                    [data-testid="direction-<attribute>-down|none|up"],
 *                                    [data-testid="size-<attribute>-none|small|medium|large"]
 *   #confidence, #commit
 *   #trial-result                    rows [data-testid="trial-<attribute>"], cells data-field person|formula|measured
 *   #score, #score-trials            rows [data-testid="score-<predictor>"] and, per network,
 *                                    [data-testid="score-<network>-<predictor>"]; predictor: person, formula, no_change
 */

const state = {
  model: null,        // GET /api/model
  network: null,      // the network being perturbed
  ownTone: null,      // {n: [K], beta: [K]}: the network's own tone curve
  off: new Set(),     // channels switched off
  tone: {},           // {"all": {n, beta}, "<attribute>": {n, beta}}: set by the sliders
  attribute: null,    // selected attribute (name)
  channel: null,      // selected channel (id)
  trial: null,        // the open trial (POST /api/trial's answer) until it is committed
  predictSeq: 0,      // the latest prediction request; older answers are dropped
  predictTimer: 0,
};

const $ = (id) => document.getElementById(id);
const PREDICTORS = [["person", "person"], ["formula", "formula"], ["no_change", "no change"]];
const DIRECTIONS = [["down", -1, "down"], ["none", 0, "no change"], ["up", 1, "up"]];

// ------------------------------------------------------------------------------------------ basics

/** GET (no body) or POST (JSON body) to the API; throws an Error with the server's one-line error. */
async function api(path, body) {
  const options = {
    method: body === undefined ? "GET" : "POST",
    headers: {"Content-Type": "application/json"},
    credentials: "same-origin",
  };
  if (body !== undefined) options.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error(`${path}: no answer from the server (${e.message})`);
  }
  let data;
  try {
    data = await response.json();
  } catch (e) {
    throw new Error(`${path}: HTTP ${response.status}, and the answer is not JSON`);
  }
  if (!response.ok || (data && data.error)) {
    throw new Error(`${path}: ${data && data.error ? data.error : "HTTP " + response.status}`);
  }
  return data;
}

function setStatus(text, kind = "info") {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

/** An event handler that reports its failure on the status line instead of losing it. */
function guarded(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (e) {
      setStatus(e.message, "error");
    }
  };
}

const missing = (x) => x === null || x === undefined || Number.isNaN(x);
const fmtChange = (x) => (missing(x) ? "—" : (x >= 0 ? "+" : "") + x.toFixed(3));
const fmt3 = (x) => (missing(x) ? "—" : x.toFixed(3));
const fmtPct = (x) => (missing(x) ? "—" : (100 * x).toFixed(1) + "%");
const fmtPoints = (x) => (missing(x) ? "—" : (x >= 0 ? "+" : "") + (100 * x).toFixed(1) + " pp");
const fmtTone = (t) => `n = ${t.n.toFixed(2)}, β = ${t.beta.toFixed(2)}`;

/** An element with properties (dataset and style as objects, on* as listeners) and children. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset" || key === "style") Object.assign(node[key], value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** A number cell: formatted text, the raw value in data-value, the API's field name in data-field. */
function numberCell(value, format, field) {
  const props = {className: "num", dataset: {value: missing(value) ? "" : String(value)}};
  if (field) props.dataset.field = field;
  return el("td", props, format(value));
}

/** Fill ``table`` with a header row and body rows (each {testid, cells: [string | <td>]}). */
function fillTable(table, headers, rows) {
  table.replaceChildren(
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((row) => el("tr", row.testid ? {"data-testid": row.testid} : {},
      ...row.cells.map((c) => (c instanceof Node ? c : el("td", {}, String(c))))))));
  return table;
}

const networkHasMasks = (name) => state.model.has_masks && name === state.model.networks[0];

// ------------------------------------------------------------------------------------------ look

function renderHeader() {
  const m = state.model;
  $("run-name").textContent = m.run;
  const acc = m.networks.map((n) => `${n} ${fmtPct(m.mean_accuracy[n])}`).join(", ");
  $("run-summary").textContent =
    `${m.attributes.length} attributes, ${m.channels} channels, ${m.images} images; head ${m.head}; ` +
    `mean accuracy ${acc}`;
}

/** Cell colour over the grid's own range: masks from white (lowest) to dark blue (highest); weights
 * (plain CNN) red below 0 and blue above, white at 0. */
function cellColour(value, low, high) {
  const v = low < 0 ? value / Math.max(high, 1e-12) : (value - low) / Math.max(high - low, 1e-12);
  const [r, g, b] = v >= 0 ? [8, 48, 107] : [165, 15, 21];
  const t = Math.min(1, Math.abs(v));
  const mix = (c) => Math.round(255 + (c - 255) * t);
  return `rgb(${mix(r)}, ${mix(g)}, ${mix(b)})`;
}

function renderGrid() {
  const m = state.model;
  const masks = m.grid !== null;
  const values = masks ? m.grid : m.weights;
  const [min, max] = values.flat().reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);
  const largest = Math.max(Math.abs(min), Math.abs(max));
  const [low, high] = masks ? [min, max] : [-largest, largest];
  $("grid-caption").textContent = masks
    ? `Mean attention mask per attribute (row) and channel (column): white ${fmt3(low)}, dark blue ${fmt3(high)}. ` +
      "Click a cell to select its attribute and channel."
    : "No attention masks (plain CNN): the head weights, red negative, blue positive. " +
      "Click a cell to select its attribute and channel.";
  const header = el("tr", {}, el("th", {}, ""),
    ...Array.from({length: m.channels}, (_, c) => el("th", {className: "channel"}, String(c))));
  const rows = m.attributes.map((name, k) => el("tr", {},
    el("th", {className: "attribute"}, name),
    ...values[k].map((v, c) => el("td", {
      className: "cell",
      "data-testid": `cell-${k}-${c}`,
      title: `${name}, channel ${c}: ${masks ? "mean mask" : "weight"} ${fmt3(v)}`,
      style: {background: cellColour(v, low, high)},
      onclick: guarded(() => selectCell(k, c)),
    }))));
  $("grid").replaceChildren(el("thead", {}, header), el("tbody", {}, ...rows));
}

function renderAccuracy() {
  const m = state.model;
  const rows = m.attributes.map((name, k) => ({
    testid: `accuracy-${name}`,
    cells: [name, ...m.networks.map((n) => numberCell(m.accuracy[n][k], fmtPct))],
  }));
  const mean = m.networks.map((n) => numberCell(m.mean_accuracy[n], fmtPct));
  rows.push({testid: "accuracy-mean", cells: ["mean", ...mean]});
  fillTable($("accuracy-table"), ["attribute", ...m.networks.map((n) => `accuracy (${n})`)], rows);
}

async function selectCell(k, c) {
  state.attribute = state.model.attributes[k];
  state.channel = c;
  for (const cell of document.querySelectorAll("#grid .selected")) cell.classList.remove("selected");
  document.querySelector(`[data-testid="cell-${k}-${c}"]`).classList.add("selected");
  setStatus(`Loading ${state.attribute} and channel ${c}…`, "busy");
  await Promise.all([showAttribute(state.attribute), showChannel(c)]);
  setStatus(`Selected ${state.attribute}, channel ${c}.`);
}

async function showAttribute(name) {
  const a = await api(`/api/attribute/${encodeURIComponent(name)}`);
  const masks = a.kind !== "activation";
  const top = fillTable(el("table", {className: "numbers"}),
    ["channel", masks ? "mean mask" : "mean activation", "weight", "evidence"],
    a.top_channels.map((t) => ({
      testid: `top-${t.channel}`,
      cells: [String(t.channel), numberCell(t.mean_mask, fmt3), numberCell(t.weight, fmtChange),
        numberCell(t.evidence, fmt3)],
    })));
  const overlays = el("div", {className: "overlays"});
  for (const [channel, maps] of Object.entries(a.maps)) {
    const row = el("div", {className: "overlay-row"}, el("span", {className: "overlay-label"}, `channel ${channel}`));
    a.samples.forEach((image, i) => {
      const canvas = el("canvas", {width: 64, height: 64, "data-testid": `overlay-${channel}-${image}`,
        title: `image ${image}${a.labels ? (a.labels[i] ? ", positive" : ", negative") : ""}`});
      row.append(canvas);
      drawOverlay(canvas, image, maps[i]).catch((e) => setStatus(e.message, "error"));
    });
    overlays.append(row);
  }
  $("attribute-view").replaceChildren(
    el("h3", {}, `Attribute: ${a.attribute}`),
    el("p", {}, "accuracy ", el("strong", {"data-testid": "attribute-accuracy"}, fmtPct(a.accuracy))),
    el("p", {className: "muted"}, `Top channels by evidence (${masks ? "mean mask" : "mean activation"} × |weight|):`),
    top,
    el("p", {className: "muted"},
      `${masks ? "Attention masks" : "Activation maps"} of the first top channels over sample images` +
      (a.labels ? " (label: ✓ positive, ✗ negative)" : "") + ":"),
    el("div", {className: "sample-labels"}, el("span", {className: "overlay-label"}, ""),
      ...a.samples.map((image, i) => el("span", {className: "sample-label"},
        `#${image}${a.labels ? (a.labels[i] ? " ✓" : " ✗") : ""}`))),
    overlays);
}

const imageCache = new Map();

function loadImage(id) {
  if (!imageCache.has(id)) {
    imageCache.set(id, new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error(`/api/image/${id}.png could not be loaded`));
      img.src = `/api/image/${id}.png`;
    }));
  }
  return imageCache.get(id);
}

/** The image, and over it the map (H x W in 0..1) as a heat overlay: transparent at 0, red at 1. */
async function drawOverlay(canvas, imageId, map) {
  const img = await loadImage(imageId);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  const h = map.length, w = map[0].length;
  const heat = el("canvas", {width: w, height: h});
  const hctx = heat.getContext("2d");
  const pixels = hctx.createImageData(w, h);
  map.forEach((line, y) => line.forEach((value, x) => {
    const v = Math.max(0, Math.min(1, value));
    pixels.data.set([255, Math.round(220 * (1 - v)), 0, Math.round(200 * v)], 4 * (y * w + x));
  }));
  hctx.putImageData(pixels, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(heat, 0, 0, canvas.width, canvas.height);
}

async function showChannel(c) {
  const ch = await api(`/api/channel/${c}`);
  const m = state.model;
  $("channel-view").replaceChildren(
    el("h3", {}, `Channel ${ch.channel}`),
    el("p", {className: "muted"}, "Most correlated channels (over the cached images):"),
    fillTable(el("table", {className: "numbers"}), ["channel", "r"],
      ch.partners.map((p) => ({
        testid: `partner-${p.channel}`,
        cells: [String(p.channel), numberCell(p.r, fmtChange)],
      }))),
    el("p", {className: "muted"}, "Its column:"),
    fillTable(el("table", {className: "numbers"}), ["attribute", m.grid ? "mean mask" : "mean activation", "weight"],
      m.attributes.map((name, k) => ({
        cells: [name, numberCell(ch.mean_masks[k], fmt3), numberCell(ch.weights[k], fmtChange)],
      }))));
}

// ------------------------------------------------------------------------------------------ perturb

function renderControls() {
  const m = state.model;
  const options = (select, values) =>
    select.replaceChildren(...values.map(([v, text]) => el("option", {value: v}, text)));
  options($("network"), m.networks.map((n) => [n, n]));
  $("network-row").hidden = m.networks.length < 2;
  const blind = m.networks.length > 1 ? ["blind"] : [];   // blind: one of the networks, drawn by the server
  options($("trial-network"), [...m.networks, ...blind].map((n) => [n, n]));
  options($("tone-target"), [["all", "all attributes"], ...m.attributes.map((a) => [a, a])]);
  $("semantic-count").max = m.channels;
  $("top-count").max = Math.max(...Object.values(m.top_channels).map((t) => t.length));
  for (const [id, [low, high], step] of [["tone-n", m.limits.n, 0.05], ["tone-beta", m.limits.beta, 0.01]]) {
    Object.assign($(id), {min: low, max: high, step});
  }
  $("switches").replaceChildren(...Array.from({length: m.channels}, (_, c) => el("label", {className: "switch"},
    el("input", {type: "checkbox", checked: true, "data-testid": `switch-${c}`, dataset: {channel: c},
      onchange: (e) => setChannel(c, e.target.checked)}),
    String(c))));
}

function setChannel(c, on) {
  if (on) state.off.delete(c); else state.off.add(c);
  perturbationChanged();
}

function setOff(channels) {
  state.off = new Set(channels);
  for (const box of document.querySelectorAll("#switches input")) {
    box.checked = !state.off.has(Number(box.dataset.channel));
  }
  perturbationChanged();
}

function switchOffSemanticFirst() {
  const P = Number($("semantic-count").value);
  if (!Number.isInteger(P) || P < 0 || P > state.model.channels) {
    throw new Error(`P must be a whole number in 0..${state.model.channels}`);
  }
  setOff(state.model.semantic_order.slice(0, P));
}

function switchOffTopOfSelected() {
  if (state.attribute === null) throw new Error("select an attribute first: click a cell of the grid");
  const top = state.model.top_channels[state.attribute];
  const count = Number($("top-count").value);
  if (!Number.isInteger(count) || count < 1 || count > top.length) {
    throw new Error(`the count of top channels must be a whole number in 1..${top.length}`);
  }
  setOff(top.slice(0, count));
}

/** The effective (n, beta) of "all" or of one attribute: its own setting, else "all"'s, else the network's. */
function toneOf(target) {
  if (state.tone[target]) return state.tone[target];
  const k = target === "all" ? 0 : state.model.attributes.indexOf(target);
  if (target !== "all" && state.tone.all) return state.tone.all;
  return {n: state.ownTone.n[k], beta: state.ownTone.beta[k]};
}

function showTone() {
  const masks = networkHasMasks(state.network) && state.ownTone !== null;
  for (const id of ["tone-target", "tone-n", "tone-beta", "tone-reset"]) $(id).disabled = !masks;
  if (!masks) {
    $("tone-summary").textContent = `The ${state.network} network has no attention masks: no tone curve.`;
    return;
  }
  const t = toneOf($("tone-target").value);
  $("tone-n").value = t.n;
  $("tone-beta").value = t.beta;
  $("tone-n-value").textContent = t.n.toFixed(2);
  $("tone-beta-value").textContent = t.beta.toFixed(2);
  const set = Object.entries(state.tone).map(([key, v]) => `${key === "all" ? "all attributes" : key}: ${fmtTone(v)}`);
  $("tone-summary").textContent = set.length ? `Set: ${set.join("; ")}.` : "The network's own tone curve.";
}

function onToneInput() {
  state.tone[$("tone-target").value] = {n: Number($("tone-n").value), beta: Number($("tone-beta").value)};
  perturbationChanged();
}

/** The perturbation as the API takes it (tone only on a network with masks). */
function currentPerturbation() {
  const p = {network: state.network, off: [...state.off].sort((a, b) => a - b)};
  if (networkHasMasks(state.network) && Object.keys(state.tone).length) p.tone = structuredClone(state.tone);
  return p;
}

function perturbationChanged() {
  $("off-count").textContent = `(${state.off.size} of ${state.model.channels} off)`;
  showTone();
  clearTimeout(state.predictTimer);
  state.predictTimer = setTimeout(guarded(refreshPrediction), 150);
}

async function refreshPrediction() {
  const seq = ++state.predictSeq;
  const answer = await api("/api/predict", currentPerturbation());
  if (seq !== state.predictSeq) return;              // a newer perturbation is on its way
  $("prediction").replaceChildren(
    el("p", {className: "muted"}, `${describe(answer.perturbation)}. Predicted: the change of each attribute's ` +
      `evidence Σ_c w·${networkHasMasks(answer.perturbation.network) ? "g(mean mask)" : "mean activation"}, ` +
      "as a share of its total."),
    fillTable(el("table", {className: "numbers"}), ["attribute", "predicted change", "size"],
      answer.predicted.map((p) => ({
        testid: `predict-${p.attribute}`,
        cells: [p.attribute, numberCell(p.change, fmtChange, "change"), numberCell(p.size, fmt3, "size")],
      }))));
}

/** A normalised perturbation in words. */
function describe(p) {
  const parts = [`network ${p.network}`, p.off.length ? `channels off: ${p.off.join(", ")}` : "no channel off"];
  if (networkHasMasks(p.network) && state.ownTone) {
    const own = state.ownTone;
    const changed = state.model.attributes.filter((_, k) => p.n[k] !== own.n[k] || p.beta[k] !== own.beta[k]);
    parts.push(changed.length ? `tone curve changed on ${changed.join(", ")}` : "own tone curve");
  }
  return parts.join("; ");
}

async function applyPerturbation() {
  if (state.trial) throw new Error("a trial is open: commit its prediction before applying");
  setStatus("Applying…", "busy");
  const started = performance.now();
  const r = await api("/api/apply", currentPerturbation());
  const seconds = r.seconds ?? (performance.now() - started) / 1000;
  const predicted = Object.fromEntries(r.predicted.map((p) => [p.attribute, p]));
  const flipped = el("div", {id: "flipped", className: "thumbnails"},
    ...r.flipped_images.map((f) => el("figure", {"data-testid": `flipped-${f.image}-${f.attribute}`},
      el("img", {src: `/api/image/${f.image}.png`, alt: `image ${f.image}`, width: 48, height: 48}),
      el("figcaption", {}, `#${f.image} ${f.attribute}: ${f.before}→${f.after} (label ${f.label})`))));
  $("apply-result").replaceChildren(
    el("p", {className: "muted"}, `Applied: ${describe(r.perturbation)}.`),
    fillTable(el("table", {className: "numbers", id: "apply-table"}),
      ["attribute", "predicted change", "measured logit change", "mean |logit change|",
        "accuracy before", "accuracy after", "accuracy change", "flipped"],
      r.measured.map((m) => ({
        testid: `apply-${m.attribute}`,
        cells: [m.attribute,
          numberCell(predicted[m.attribute].change, fmtChange, "change"),
          numberCell(m.logit_change, fmtChange, "logit_change"),
          numberCell(m.abs_logit_change, fmt3, "abs_logit_change"),
          numberCell(m.accuracy_before, fmtPct, "accuracy_before"),
          numberCell(m.accuracy_after, fmtPct, "accuracy_after"),
          numberCell(m.accuracy_change, fmtPoints, "accuracy_change"),
          numberCell(m.flipped, String, "flipped")],
      }))),
    el("p", {className: "muted"}, "Logit changes are mean changes in units of the logit's standard deviation. " +
      (r.flipped_images.length ? `Flipped decisions (${r.flipped_images.length} shown; before→after):`
        : "No decision flipped.")),
    flipped);
  setStatus(`Applied in ${seconds.toFixed(2)} s.`);
}

async function exportPerturbation() {
  const name = $("export-name").value.trim();
  if (!name) throw new Error("give the exported model a folder name");
  setStatus("Exporting…", "busy");
  const r = await api("/api/export", {perturbation: currentPerturbation(), name});
  $("export-path").textContent = `${r.path} (${r.channels} channels kept)`;
  setStatus(`Exported to ${r.path}.`);
}

// ------------------------------------------------------------------------------------------ predict, then see

async function newTrial() {
  const body = {mode: $("trial-mode").value, network: $("trial-network").value};
  if (body.mode === "own") {
    const {network, ...own} = currentPerturbation();
    body.perturbation = own;
  }
  setStatus("Starting a trial…", "busy");
  const t = await api("/api/trial", body);
  state.trial = t;
  const levels = t.size_levels || state.model.size_levels;
  $("trial-description").textContent = t.description;
  $("trial-network-shown").textContent = t.network;
  $("trial-result").replaceChildren();
  fillTable($("trial-form"), ["attribute", "direction", "size"], t.attributes.map((a, i) => ({
    testid: `form-${a}`,
    cells: [a,
      el("td", {}, ...DIRECTIONS.map(([word, value, text]) =>
        radio(`direction-${i}`, value, text, `direction-${a}-${word}`))),
      el("td", {}, ...levels.map((level, s) => radio(`size-${i}`, s, level, `size-${a}-${level}`)))],
  })));
  setTrialOpen(true);
  setStatus(`Trial ${t.trial}: predict, then commit.`);
}

function radio(name, value, text, testid) {
  return el("label", {className: "choice"},
    el("input", {type: "radio", name, value, "data-testid": testid, onchange: () => coupleChoice(name, value)}),
    text);
}

/** "no change" goes with size none and back; a direction picked with size none gets "small". */
function coupleChoice(name, value) {
  const [kind, i] = name.split("-");
  const pick = (group, v) => { document.querySelector(`input[name="${group}-${i}"][value="${v}"]`).checked = true; };
  const checked = (group) => document.querySelector(`input[name="${group}-${i}"]:checked`);
  if (kind === "direction" && value === 0) pick("size", 0);
  if (kind === "direction" && value !== 0 && (!checked("size") || checked("size").value === "0")) pick("size", 1);
  if (kind === "size" && value === 0) pick("direction", 0);
}

function setTrialOpen(open) {
  document.body.classList.toggle("trial-open", open);
  if (open) $("trial").hidden = false;
  $("apply").disabled = open;
  $("commit").disabled = !open;
  for (const input of document.querySelectorAll("#trial-form input")) input.disabled = !open;
}

/** The person's predictions from the form; throws a readable error when a row is incomplete. */
function readPredictions() {
  const predictions = {};
  state.trial.attributes.forEach((a, i) => {
    const direction = document.querySelector(`input[name="direction-${i}"]:checked`);
    const size = document.querySelector(`input[name="size-${i}"]:checked`);
    if (!direction || !size) throw new Error(`${a}: choose a direction and a size`);
    const d = Number(direction.value), s = Number(size.value);
    if ((d === 0) !== (s === 0)) throw new Error(`${a}: "no change" goes with size none, down or up with a size`);
    predictions[a] = {direction: d, size: s};
  });
  return predictions;
}

async function commitTrial() {
  if (!state.trial) throw new Error("no open trial: start one with New trial");
  const body = {predictions: readPredictions(), confidence: Number($("confidence").value)};
  setStatus("Committing…", "busy");
  const r = await api(`/api/trial/${encodeURIComponent(state.trial.trial)}/commit`, body);
  const levels = state.trial.size_levels || state.model.size_levels;
  state.trial = null;
  setTrialOpen(false);
  const attributes = r.attributes || r.predicted.map((p) => p.attribute);
  const words = (v) => (v === 0 ? "no change" : `${v > 0 ? "up" : "down"}, ${levels[Math.abs(v)]}`);
  $("trial-result").replaceChildren(
    el("p", {}, "Network: ", el("strong", {}, r.network),
      ". Measured: the mean logit change, in the logit's standard deviations."),
    fillTable(el("table", {className: "numbers"}), ["attribute", "you", "formula", "measured", "accuracy change"],
      attributes.map((a, i) => ({
        testid: `trial-${a}`,
        cells: [a,
          el("td", {className: "num", dataset: {field: "person", value: String(r.person[i])}},
            `${words(r.person[i])} (${r.person[i] > 0 ? "+" : ""}${r.person[i]})`),
          numberCell(r.predicted[i].change, fmtChange, "formula"),
          numberCell(r.measured[i].logit_change, fmtChange, "measured"),
          numberCell(r.measured[i].accuracy_change, fmtPoints, "accuracy_change")],
      }))));
  renderScore(r.score);
  setStatus("Committed: the trial is logged.");
}

function scoreRows(s, prefix) {
  return PREDICTORS.map(([key, label]) => {
    const p = s[key] || {};
    return {
      testid: `score-${prefix}${key}`,
      cells: [label, numberCell(p.score, fmt3, "score"),
        el("td", {className: "num", dataset: {field: "interval"}}, `[${fmt3(p.ci_low)}, ${fmt3(p.ci_high)}]`),
        numberCell(p.n, (x) => (missing(x) ? "—" : String(x)), "n"),
        numberCell(p.direction_agreement, fmtPct, "direction_agreement")],
    };
  });
}

function renderScore(s) {
  const headers = ["predictor", "score (Spearman)", "95% interval", "pairs", "direction right"];
  $("score-trials").textContent = `(${s.trials} trial${s.trials === 1 ? "" : "s"})`;
  const parts = [fillTable(el("table", {className: "numbers"}), headers, scoreRows(s, ""))];
  for (const [network, t] of Object.entries(s.by_network || {})) {
    parts.push(el("h4", {}, `${network} (${t.trials} trial${t.trials === 1 ? "" : "s"})`),
      fillTable(el("table", {className: "numbers"}), headers, scoreRows(t, `${network}-`)));
  }
  if (PREDICTORS.some(([key]) => !s[key] || missing(s[key].score))) {
    parts.push(el("p", {className: "muted"},
      "— : no score yet (it needs 3 predicted attributes whose measured changes differ)."));
  }
  for (const w of s.warnings || []) parts.push(el("p", {className: "warning"}, w));
  $("score").replaceChildren(...parts);
}

// ------------------------------------------------------------------------------------------ start

function bindEvents() {
  $("network").addEventListener("change", (e) => { state.network = e.target.value; perturbationChanged(); });
  $("all-on").addEventListener("click", () => setOff([]));
  $("semantic-first").addEventListener("click", guarded(switchOffSemanticFirst));
  $("top-of-selected").addEventListener("click", guarded(switchOffTopOfSelected));
  $("tone-target").addEventListener("change", showTone);
  $("tone-n").addEventListener("input", onToneInput);
  $("tone-beta").addEventListener("input", onToneInput);
  $("tone-reset").addEventListener("click", () => { state.tone = {}; perturbationChanged(); });
  $("apply").addEventListener("click", guarded(applyPerturbation));
  $("export").addEventListener("click", guarded(exportPerturbation));
  $("new-trial").addEventListener("click", guarded(newTrial));
  $("commit").addEventListener("click", guarded(commitTrial));
  $("confidence").addEventListener("input", (e) => {
    $("confidence-value").textContent = Number(e.target.value).toFixed(2);
  });
  window.addEventListener("unhandledrejection", (e) => setStatus(String(e.reason?.message ?? e.reason), "error"));
}

async function init() {
  bindEvents();
  state.model = await api("/api/model");
  state.network = state.model.networks[0];
  renderHeader();
  renderGrid();
  renderAccuracy();
  renderControls();
  if (networkHasMasks(state.network)) {
    const own = await api("/api/predict", {network: state.network});
    state.ownTone = {n: own.perturbation.n, beta: own.perturbation.beta};
  }
  perturbationChanged();
  setTrialOpen(false);
  renderScore(await api("/api/score"));
  setStatus("Ready.");
}

document.addEventListener("DOMContentLoaded", guarded(init));

"use strict";
/*
 * hpnet serve: the page. Plain JavaScript, no libraries, no build step. It speaks only to the JSON
 * API of hpnet.hitl.app on its own origin (every request with Content-Type: application/json).
 * Channels are named with where they fire by roles.js (loaded first; its hooks are listed there).
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
 *   #channel-view                    the selected channel: [data-testid="channel-title"], partners
 *                                    [data-testid="partner-C"], where it fires beside its mask (roles.js)
 *   #accuracy-table                  rows [data-testid="accuracy-<attribute>"]
 * Perturb (the Operation panel, built from GET /api/model's "operations")
 *   #network                         network selector (shown only with more than one network)
 *   #operation                       the operations that apply to that network (value: the operation's name)
 *   #operation-summary, #fields      its words, and a control per field (F the field's name):
 *     channels                       [data-testid="F-C"] a checkbox per channel (checked = in the set),
 *                                    #count-F, #clear-F, #semantic-count-F + #semantic-first-F,
 *                                    #top-count-F + #top-of-selected-F, #part-choice-F + #part-channels-F
 *                                    (shortcuts that fill the set); a channel's label names its part
 *     number                         #field-F (range input, listens to "input"), #field-F-value
 *     attributes                     #field-F (select: "all" or an attribute)
 *   #card                            what a person is shown: rows [data-testid="card-<attribute>"],
 *                                    [data-testid="card-roles"] where its channels fire,
 *                                    cells data-field = the fact, data-value its value
 *   #formula-panel                   #formula-text and #prediction, rows [data-testid="predict-<attribute>"]
 *                                    (hidden while a trial is open)
 *   #apply, #apply-result            rows [data-testid="apply-<attribute>"]; cells carry data-field (the API's
 *                                    field: change, logit_change, abs_logit_change, accuracy_before,
 *                                    accuracy_after, accuracy_change, flipped) and data-value (the raw number)
 *   #flipped                         flipped images, [data-testid="flipped-I-<attribute>"]
 *   #export-name, #export, #export-path
 * Predict, then see
 *   #trial-mode, #trial-network, #new-trial, #trial-description, #trial-network-shown ("hidden" when blind)
 *   #trial-cards                     the operation's card on the shown attributes (facts only), rows
 *                                    [data-testid="trial-card-<attribute>"]
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
  operation: null,    // the operation's name
  values: {},         // field name -> {kind, value}: a Set of channels, a number, "all" or an attribute
  attribute: null,    // selected attribute (name)
  channel: null,      // selected channel (id)
  gridOrder: "id",    // the grid's columns: "id" or "part" (grouped by where the channels fire)
  markedPart: null,   // the part whose columns the legend marks
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
  const order = columnOrder();
  const marked = (c) => state.markedPart !== null && roleOf(c) !== state.markedPart;
  const header = el("tr", {}, el("th", {}, ""),
    ...order.map((c) => el("th", {className: "channel", title: channelTitle(c)}, String(c))));
  const rows = m.attributes.map((name, k) => el("tr", {},
    el("th", {className: "attribute"}, name),
    ...order.map((c) => el("td", {
      className: `cell${marked(c) ? " faded" : ""}${k === m.attributes.indexOf(state.attribute) && c === state.channel
        ? " selected" : ""}`,
      "data-testid": `cell-${k}-${c}`,
      title: `${name}, ${channelTitle(c)}; ${masks ? "mean mask" : "weight"} ${fmt3(values[k][c])}`,
      style: {background: cellColour(values[k][c], low, high)},
      onclick: guarded(() => selectCell(k, c)),
    }))));
  $("grid").replaceChildren(el("thead", {}, header, partRow(order)), el("tbody", {}, ...rows));
  renderLegend();
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
  const a = await showAttribute(state.attribute);
  await showChannel(c, a.samples, state.attribute);
  setStatus(`Selected ${state.attribute}, channel ${c}.`);
}

async function showAttribute(name) {
  const a = await api(`/api/attribute/${encodeURIComponent(name)}`);
  const masks = a.kind !== "activation";
  const top = fillTable(el("table", {className: "numbers"}),
    ["channel", masks ? "mean mask" : "mean activation", "weight", "evidence"],
    a.top_channels.map((t) => ({
      testid: `top-${t.channel}`,
      cells: [`${t.channel}${roleText(roleOf(t.channel))}`, numberCell(t.mean_mask, fmt3), numberCell(t.weight, fmtChange),
        numberCell(t.evidence, fmt3)],
    })));
  const overlays = el("div", {className: "overlays"});
  for (const [channel, maps] of Object.entries(a.maps)) {
    const row = el("div", {className: "overlay-row"}, el("span", {className: "overlay-label",
      title: channelTitle(Number(channel))}, `channel ${channel}${roleText(roleOf(Number(channel)))}`));
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
  return a;
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

/** The channel view: its role in words, where it fires beside its mask on ``samples``, its partners, its column. */
async function showChannel(c, samples, attribute) {
  const ch = await api(`/api/channel/${c}`);
  const m = state.model;
  $("channel-view").replaceChildren(
    el("h3", {dataset: {testid: "channel-title"}}, `Channel ${ch.channel}${roleText(ch.role)}`),
    el("p", {dataset: {testid: "channel-fires-words"}}, firesWords(ch)),
    channelMaps(ch, samples, attribute),
    el("p", {className: "muted"}, "Most correlated channels (over the cached images):"),
    fillTable(el("table", {className: "numbers"}), ["channel", "r"],
      ch.partners.map((p) => ({
        testid: `partner-${p.channel}`,
        cells: [`${p.channel}${roleText(p.role)}`, numberCell(p.r, fmtChange)],
      }))),
    el("p", {className: "muted"}, "Its column:"),
    fillTable(el("table", {className: "numbers"}), ["attribute", m.grid ? "mean mask" : "mean activation", "weight"],
      m.attributes.map((name, k) => ({
        cells: [name, numberCell(ch.mean_masks[k], fmt3), numberCell(ch.weights[k], fmtChange)],
      }))));
}

// ------------------------------------------------------------------------------------------ perturb
/*
 * The Operation panel is built from GET /api/model's "operations" (each: name, title, summary,
 * shown, formula_text, fields, networks): nothing here knows an operation by name. A field's kind
 * gives its control: "channels" a checkbox per channel (and shortcuts filling the set), "number" a
 * range input, "attributes" a select ("all" or one attribute). Values are kept per field name, so
 * a channel set chosen for one operation stays when another with a channel field is picked.
 */

const options = (select, values) =>
  select.replaceChildren(...values.map(([v, text]) => el("option", {value: v}, text)));

function renderControls() {
  const m = state.model;
  options($("network"), m.networks.map((n) => [n, n]));
  $("network-row").querySelector(".network-choice").hidden = m.networks.length < 2;
  const blind = m.networks.length > 1 ? ["blind"] : [];   // blind: one of the networks, drawn by the server
  options($("trial-network"), [...m.networks, ...blind].map((n) => [n, n]));
  renderOperations();
}

/** The operations that apply to the network being perturbed, in the select; keeps the current one when it applies. */
function renderOperations() {
  const usable = state.model.operations.filter((o) => o.networks.includes(state.network));
  options($("operation"), usable.map((o) => [o.name, o.title]));
  const keep = usable.find((o) => o.name === state.operation);
  state.operation = keep ? keep.name : (usable[0] ? usable[0].name : null);
  if (state.operation) $("operation").value = state.operation;
  renderFields();
}

const currentOp = () => state.model.operations.find((o) => o.name === state.operation) || null;

function renderFields() {
  const op = currentOp();
  $("operation-summary").textContent = op ? `${op.summary} Shown: ${op.shown}` : "No operation applies to this network.";
  $("formula-text").textContent = op ? `Formula: ${op.formula_text}` : "";
  $("fields").replaceChildren(...(op ? op.fields.map(fieldControl) : []));
  perturbationChanged();
}

function fieldControl(f) {
  if (!(f.name in state.values) || state.values[f.name].kind !== f.kind) {
    const value = f.kind === "channels" ? new Set(f.default || [])
      : f.kind === "number" ? (f.default ?? f.low) : (f.default ?? "all");
    state.values[f.name] = {kind: f.kind, value};
  }
  if (f.kind === "channels") return channelsControl(f);
  if (f.kind === "number") return numberControl(f);
  if (f.kind === "attributes") return attributesControl(f);
  if (f.kind === "choice") return choiceControl(f);
  return el("p", {className: "warning"}, `${f.label}: a field of kind ${f.kind} has no control on this page`);
}

function channelsControl(f) {
  const m = state.model;
  const set = state.values[f.name].value;
  const role = (c) => roleOf(c, state.network);
  const boxes = Array.from({length: m.channels}, (_, c) => el("label", {className: "switch", title: channelTitle(c, state.network)},
    el("input", {type: "checkbox", checked: set.has(c), "data-testid": `${f.name}-${c}`, dataset: {channel: c},
      onchange: (e) => { if (e.target.checked) set.add(c); else set.delete(c); perturbationChanged(); }}),
    `${c} `,
    role(c) && role(c) !== "none"
      ? el("span", {className: "role-tag", style: {borderColor: partColour(role(c))}}, role(c)) : null));
  const topMax = Math.max(...Object.values(m.top_channels).map((t) => t.length));
  return el("div", {className: "field", dataset: {kind: "channels", name: f.name}},
    el("h3", {}, `${f.label} `, el("span", {id: `count-${f.name}`, className: "muted"})),
    el("div", {className: "row"},
      el("button", {type: "button", id: `clear-${f.name}`, onclick: () => setChannels(f.name, [])}, "None"),
      el("label", {htmlFor: `semantic-count-${f.name}`}, "first"),
      el("input", {type: "number", id: `semantic-count-${f.name}`, min: 0, max: m.channels, value: 1}),
      el("button", {type: "button", id: `semantic-first-${f.name}`, onclick: guarded(() => semanticFirst(f.name))},
        "First P of the semantic order"),
      el("label", {htmlFor: `top-count-${f.name}`}, "top"),
      el("input", {type: "number", id: `top-count-${f.name}`, min: 1, max: topMax, value: 3}),
      el("button", {type: "button", id: `top-of-selected-${f.name}`, onclick: guarded(() => topOfSelected(f.name))},
        "Top channels of the selected attribute"),
      partShortcut(f.name)),
    el("div", {className: "switches", id: `field-${f.name}`}, ...boxes));
}

/** "the mouth channels": a part of the network's channels and a button that fills the set with them
 * (null when the network's roles are unknown or no channel has a part). */
function partShortcut(name) {
  const parts = partsWithChannels(state.network);
  if (!parts.length) return null;
  const select = el("select", {id: `part-choice-${name}`});
  options(select, parts.map(([p, cs]) => [p, `${p} (${cs.length})`]));
  return el("span", {className: "row"},
    el("label", {htmlFor: `part-choice-${name}`}, "part"), select,
    el("button", {type: "button", id: `part-channels-${name}`,
      onclick: () => setChannels(name, parts.find(([p]) => p === select.value)[1])}, "Channels of the part"));
}

function numberControl(f) {
  const v = state.values[f.name];
  const shown = el("output", {id: `field-${f.name}-value`}, Number(v.value).toFixed(2));
  return el("div", {className: "field row", dataset: {kind: "number", name: f.name}},
    el("label", {htmlFor: `field-${f.name}`}, f.label),
    el("input", {type: "range", id: `field-${f.name}`, min: f.low, max: f.high, step: f.step, value: v.value,
      oninput: (e) => { v.value = Number(e.target.value); shown.textContent = v.value.toFixed(2); perturbationChanged(); }}),
    shown,
    el("span", {className: "muted"}, `${f.low} to ${f.high}`));
}

function attributesControl(f) {
  const v = state.values[f.name];
  const select = el("select", {id: `field-${f.name}`,
    onchange: (e) => { v.value = e.target.value; perturbationChanged(); }});
  options(select, [["all", "all attributes"], ...state.model.attributes.map((a) => [a, a])]);
  select.value = v.value;
  return el("div", {className: "field row", dataset: {kind: "attributes", name: f.name}},
    el("label", {htmlFor: `field-${f.name}`}, f.label), select);
}

function choiceControl(f) {
  const v = state.values[f.name];
  const select = el("select", {id: `field-${f.name}`,
    onchange: (e) => { v.value = e.target.value; perturbationChanged(); }});
  options(select, f.choices.map((c) => [c, c]));
  select.value = v.value;
  return el("div", {className: "field row", dataset: {kind: "choice", name: f.name}},
    el("label", {htmlFor: `field-${f.name}`}, f.label), select);
}

function setChannels(name, channels) {
  const set = state.values[name].value;
  set.clear();
  for (const c of channels) set.add(c);
  for (const box of document.querySelectorAll(`#field-${name} input`)) box.checked = set.has(Number(box.dataset.channel));
  perturbationChanged();
}

function semanticFirst(name) {
  const P = Number($(`semantic-count-${name}`).value);
  if (!Number.isInteger(P) || P < 0 || P > state.model.channels) {
    throw new Error(`P must be a whole number in 0..${state.model.channels}`);
  }
  setChannels(name, state.model.semantic_order.slice(0, P));
}

function topOfSelected(name) {
  if (state.attribute === null) throw new Error("select an attribute first: click a cell of the grid");
  const top = state.model.top_channels[state.attribute];
  const count = Number($(`top-count-${name}`).value);
  if (!Number.isInteger(count) || count < 1 || count > top.length) {
    throw new Error(`the count of top channels must be a whole number in 1..${top.length}`);
  }
  setChannels(name, top.slice(0, count));
}

/** The current operation as the API takes it ({"operation": name, ...its fields}), or null with the
 * reason in ``missing`` when a channel set is empty. */
function currentOperation() {
  const op = currentOp();
  if (!op) return {operation: null, missing: "no operation applies to this network"};
  const out = {operation: op.name};
  for (const f of op.fields) {
    const v = state.values[f.name].value;
    if (f.kind === "channels") {
      if (!v.size) return {operation: null, missing: `choose at least one channel (${f.label})`};
      out[f.name] = [...v].sort((a, b) => a - b);
    } else if (f.kind === "attributes") {
      out[f.name] = v === "all" ? "all" : [v];
    } else {
      out[f.name] = v;
    }
  }
  return out;
}

/** The perturbation as the API takes it; throws a readable error when it is incomplete. */
function currentPerturbation() {
  const op = currentOperation();
  if (!op.operation) throw new Error(`${state.operation || "operation"}: ${op.missing}`);
  return {network: state.network, ...op};
}

function perturbationChanged() {
  for (const [name, v] of Object.entries(state.values)) {
    const count = $(`count-${name}`);
    if (count && v.kind === "channels") count.textContent = `(${v.value.size} of ${state.model.channels})`;
  }
  clearTimeout(state.predictTimer);
  state.predictTimer = setTimeout(guarded(refreshPrediction), 150);
}

async function refreshPrediction() {
  const seq = ++state.predictSeq;
  const op = currentOperation();
  if (!op.operation) {
    $("card").replaceChildren(el("p", {className: "muted"}, `Nothing to show yet: ${op.missing}.`));
    $("prediction").replaceChildren();
    return;
  }
  const answer = await api("/api/predict", {network: state.network, ...op});
  if (seq !== state.predictSeq) return;              // a newer perturbation is on its way
  $("card").replaceChildren(...answer.cards.map((c) => renderCard(c, "card", answer.perturbation.network)));
  $("prediction").replaceChildren(
    el("p", {className: "muted"}, `${describe(answer)}: the predicted change of each attribute's logit, as a ` +
      "share of its evidence, and its size."),
    fillTable(el("table", {className: "numbers"}), ["attribute", "predicted change", "size"],
      answer.predicted.map((p) => ({
        testid: `predict-${p.attribute}`,
        cells: [p.attribute, numberCell(p.change, fmtChange, "change"), numberCell(p.size, fmt3, "size")],
      }))));
}

/** A value of a card's "common" part in words: numbers, lists of numbers, objects (their number entries). */
function inWords(value) {
  if (typeof value === "number") return String(Math.round(value * 1e4) / 1e4);
  if (Array.isArray(value)) return value.map(inWords).filter((s) => s).join(value.every((v) => typeof v === "number") ? ", " : "; ");
  if (value && typeof value === "object") {
    return Object.entries(value).filter(([, v]) => typeof v === "number").map(([k, v]) => `${k} = ${inWords(v)}`).join(", ");
  }
  return value === null || value === undefined ? "" : String(value);
}

/** A card (Card.to_json): its description, its common facts, and a row per attribute of its number facts
 * (rows [data-testid="<prefix>-<attribute>"], cells data-field = the fact's name, data-value its value). */
function renderCard(card, prefix, network) {
  const rows = card.attributes;
  const facts = rows.length ? Object.keys(rows[0]).filter((k) => k !== "attribute" && typeof rows[0][k] === "number") : [];
  const common = Object.entries(card.common || {}).map(([k, v]) => `${k}: ${inWords(v)}`).join("; ");
  const channels = Array.isArray((card.common || {}).channels) ? card.common.channels : [];
  const where = rolesOf(network) && channels.length
    ? el("p", {className: "muted", dataset: {testid: `${prefix}-roles`}},
      "Where they fire: " + channels.map((c) => `${c}${roleText(roleOf(c, network))}`).join(", ") + ".")
    : null;
  return el("div", {className: "card", dataset: {operation: card.operation}},
    el("p", {}, el("strong", {}, card.description), common ? el("span", {className: "muted"}, ` (${common})`) : null),
    where,
    fillTable(el("table", {className: "numbers"}),
      ["attribute", ...facts.map((f) => el("span", {title: card.labels[f] || f}, f.replaceAll("_", " ")))],
      rows.map((r) => ({testid: `${prefix}-${r.attribute}`,
        cells: [r.attribute, ...facts.map((f) => numberCell(r[f], fmtChange, f))]}))));
}

/** A perturbation answered by the API in words: its network and its cards' descriptions. */
function describe(answer) {
  const what = answer.cards.map((c) => c.description).join("; ") || "no change";
  return `${answer.perturbation.network}: ${what}`;
}

async function applyPerturbation() {
  if (state.trial) throw new Error("a trial is open: commit its prediction before applying");
  const body = currentPerturbation();
  setStatus("Applying…", "busy");
  const started = performance.now();
  const r = await api("/api/apply", body);
  const seconds = r.seconds ?? (performance.now() - started) / 1000;
  const predicted = Object.fromEntries(r.predicted.map((p) => [p.attribute, p]));
  const flipped = el("div", {id: "flipped", className: "thumbnails"},
    ...r.flipped_images.map((f) => el("figure", {"data-testid": `flipped-${f.image}-${f.attribute}`},
      el("img", {src: `/api/image/${f.image}.png`, alt: `image ${f.image}`, width: 48, height: 48}),
      el("figcaption", {}, `#${f.image} ${f.attribute}: ${f.before}→${f.after} (label ${f.label})`))));
  $("apply-result").replaceChildren(
    el("p", {className: "muted"}, `Applied: ${describe(r)}.`),
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
  const perturbation = currentPerturbation();
  setStatus("Exporting…", "busy");
  const r = await api("/api/export", {perturbation, name});
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
  $("trial-cards").replaceChildren(...t.cards.map((c) => renderCard(c, "trial-card", t.network)));
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
  $("formula-panel").hidden = open;          // never the formula's answer before the person commits
  $("apply-result").hidden = open;
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
  $("network").addEventListener("change", (e) => { state.network = e.target.value; renderOperations(); });
  $("operation").addEventListener("change", (e) => { state.operation = e.target.value; renderFields(); });
  $("grid-order").addEventListener("change", (e) => { state.gridOrder = e.target.value; renderGrid(); });
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
  setTrialOpen(false);
  renderScore(await api("/api/score"));
  setStatus("Ready.");
}

document.addEventListener("DOMContentLoaded", guarded(init));

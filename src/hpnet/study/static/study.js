/* The participant's page of a study: consent, then each item (card, the formula in the "formula"
 * condition, a prediction per shown attribute, a confidence), feedback after learning items only,
 * and the last question. Everything it shows comes from /p/TOKEN/api/; the measured change arrives
 * only in the answer to a committed learning item.
 *
 * Test ids: consent, agree, item, phase, what, roles, cards, formula, predictions, choice-<attribute>-<d>-<s>,
 * confidence, commit, feedback, outcome, next, rating, rate-<label>-<v>, rate, skip, done, error, progress.
 */
"use strict";

const TOKEN = window.location.pathname.split("/").filter((s) => s)[1];
const API = `/p/${TOKEN}/api`;
const CHOICES = [[-1, 3], [-1, 2], [-1, 1], [0, 0], [1, 1], [1, 2], [1, 3]];
const state = {item: null, chosen: {}, info: null, rating: {}};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

async function call(method, path, body) {
  const options = {method, headers: {}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(`${API}/${path}`, options);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `${response.status}`);
  return answer;
}

function show(section) {
  for (const id of ["consent", "item", "feedback", "rating", "done"]) $(id).hidden = id !== section;
  $("error").hidden = true;
}

function fail(error) {
  $("error").textContent = error.message;
  $("error").hidden = false;
}

function words(d, s) {
  if (d === 0) return "no change";
  return `${["", "small", "medium", "large"][s]} ${d < 0 ? "down" : "up"}`;
}

function signed(v) {
  return `${v >= 0 ? "+" : "\u2212"}${Math.abs(v).toFixed(3)}`;
}

/** A card (the operation's facts per shown attribute): its description, common facts, a row per attribute. */
function renderCard(card) {
  const rows = card.attributes;
  const facts = rows.length ? Object.keys(rows[0]).filter((k) => k !== "attribute" && typeof rows[0][k] === "number") : [];
  const common = Object.entries(card.common || {})
    .map(([k, v]) => `${k.replaceAll("_", " ")}: ${Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : v}`)
    .join("; ");
  const table = el("table", {},
    el("tr", {}, el("th", {}, "attribute"), ...facts.map((f) => el("th", {title: card.labels[f] || f}, f.replaceAll("_", " ")))),
    ...rows.map((r) => el("tr", {}, el("td", {}, r.attribute.replaceAll("_", " ")),
      ...facts.map((f) => el("td", {className: "num", dataset: {field: f}}, signed(r[f]))))));
  return el("div", {className: "card"}, el("p", {}, el("strong", {}, card.description),
    common ? el("span", {className: "muted"}, ` (${common})`) : null), table,
    el("p", {className: "muted"}, Object.entries(card.labels || {}).map(([k, v]) => `${k.replaceAll("_", " ")}: ${v}`).join(" \u00b7 ")));
}

function renderItem(item) {
  state.item = item;
  state.chosen = {};
  $("progress").textContent = `question ${item.position} of ${item.items}`;
  $("phase").textContent = item.phase === "learn"
    ? "Learning: after you commit, you see what really happened."
    : "Test: no feedback from here on.";
  $("what").textContent = `Network ${item.network}: ${item.description}`;
  const roles = Object.entries(item.roles || {});
  $("roles").hidden = !roles.length;
  $("roles").textContent = `Where ${roles.length > 1 ? "these channels fire" : "this channel fires"}: ` +
    roles.map(([c, part]) => `${c} ${part === "none" ? "(no one face part)" : part}`).join(", ");
  $("cards").replaceChildren(...item.card.map(renderCard));
  $("formula").hidden = !item.formula;
  if (item.formula) {
    $("formula").replaceChildren(el("h3", {}, "What a formula predicts"),
      el("p", {className: "muted"}, "The change of each attribute's evidence as a share of its total, signed. It may be wrong."),
      el("table", {}, ...item.attributes.map((a, k) => el("tr", {dataset: {testid: `formula-${a}`}},
        el("td", {}, a.replaceAll("_", " ")), el("td", {className: "num"}, signed(item.formula[k]))))));
  }
  $("predictions").replaceChildren(...item.attributes.map((a) => el("tr", {},
    el("td", {}, a.replaceAll("_", " ")),
    el("td", {}, el("div", {className: "choices"}, ...CHOICES.map(([d, s]) => el("button", {
      className: d < 0 ? "down" : d > 0 ? "up" : "none", type: "button", "aria-pressed": "false",
      "data-testid": `choice-${a}-${d}-${s}`, onclick: (e) => choose(a, d, s, e.target)}, words(d, s))))))));
  $("confidence").value = 50;
  $("confidence-value").textContent = "50%";
  $("commit").disabled = true;
  show("item");
}

function choose(attribute, d, s, button) {
  state.chosen[attribute] = {direction: d, size: s};
  for (const other of button.parentElement.children) other.setAttribute("aria-pressed", String(other === button));
  $("commit").disabled = state.item.attributes.some((a) => !(a in state.chosen));
}

async function commit() {
  $("commit").disabled = true;
  const item = state.item;
  const answer = await call("POST", "answer", {item: item.item, predictions: state.chosen,
    confidence: Number($("confidence").value) / 100});
  if (item.phase === "learn") {
    $("outcome").replaceChildren(el("tr", {}, el("th", {}, "attribute"), el("th", {}, "you said"),
      el("th", {}, "measured change"), el("th", {}, "so it went")),
      ...item.attributes.map((a, k) => el("tr", {dataset: {testid: `outcome-${a}`}},
        el("td", {}, a.replaceAll("_", " ")), el("td", {}, words(state.chosen[a].direction, state.chosen[a].size)),
        el("td", {className: "num"}, signed(answer.measured[k])),
        el("td", {}, ["down", "no change", "up"][answer.measured_direction[k] + 1]))));
    show("feedback");
  } else {
    await next();
  }
}

async function next() {
  const item = await call("GET", "item");
  if (item.done) return showRating();
  renderItem(item);
}

function showRating() {
  state.rating = {};
  $("progress").textContent = "";
  $("ratings").replaceChildren(...state.info.networks.map((label) => el("div", {className: "scale"},
    el("span", {}, `Network ${label}`), ...[1, 2, 3, 4, 5, 6, 7].map((v) => el("button", {
      type: "button", "aria-pressed": "false", "data-testid": `rate-${label}-${v}`,
      onclick: (e) => { state.rating[label] = v; for (const b of e.target.parentElement.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === e.target)); }}, String(v))))));
  show("rating");
}

async function start() {
  state.info = await call("GET", "state");
  $("info-sheet").textContent = state.info.info_sheet;
  if (!state.info.consented) return show("consent");
  if (state.info.done) return showRating();
  await next();
}

function guarded(fn) {
  return () => fn().catch(fail);
}

$("agree").addEventListener("click", guarded(async () => { await call("POST", "consent", {}); await next(); }));
$("commit").addEventListener("click", guarded(commit));
$("next").addEventListener("click", guarded(next));
$("rate").addEventListener("click", guarded(async () => {
  if (Object.keys(state.rating).length) await call("POST", "rating", state.rating);
  show("done");
}));
$("skip").addEventListener("click", () => show("done"));
$("confidence").addEventListener("input", () => { $("confidence-value").textContent = `${$("confidence").value}%`; });
start().catch(fail);

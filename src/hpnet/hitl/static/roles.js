"use strict";
/*
 * hpnet serve: channels named with where they fire (their face part, from network dissection), for
 * the page (app.js, loaded after this file). GET /api/model's "roles" gives, per network, null (its
 * images do not say where face parts lie: nothing extra is shown) or {parts, role: per channel a
 * part or "none", iou: per channel the IoU of its best part}.
 *
 * Hooks for browser tests:
 *   #grid tr.parts th[data-testid="part-C"]   the grid's row of part colours (data-part = the role)
 *   #grid-order                                column order of the grid: "id" or "part"
 *   #grid-legend [data-testid="legend-P"]      a part and its channel count; a click marks its columns
 *   [data-testid="channel-fires-words"]        the channel view: where it fires, in words
 *   [data-testid="fires-C-I"], [data-testid="mask-C-I"]   channel C on image I: where it fires, its mask
 */

// one colour per face part (in the order of hpnet.data.parts.PARTS); "none" is grey
const PART_COLOURS = {
  background: "#9e9e9e", neck: "#aec7e8", hair: "#6b3e26", ears: "#e377c2", face: "#f4c7a1",
  forehead: "#dbdb8d", cheeks: "#ff9896", chin: "#bcbd22", nose: "#ff7f0e", mouth: "#d62728",
  brows: "#2ca02c", glasses: "#17becf", eyes: "#1f77b4", hat: "#9467bd",
};
const NO_PART = "#e6e6e6";

/** The roles of a network (GET /api/model's entry), or null when they are unknown. */
const rolesOf = (network = state.model.networks[0]) => (state.model.roles || {})[network] || null;

/** Channel c's role in a network: a part, "none", or null when roles are unknown. */
function roleOf(c, network) {
  const r = rolesOf(network);
  return r ? r.role[c] : null;
}

/** A channel's role in words after its id: " (mouth)", " (no one face part)", or nothing when unknown. */
function roleText(role) {
  if (role === null || role === undefined) return "";
  return role === "none" ? " (no one face part)" : ` (${role})`;
}

const partColour = (part) => (part === "none" ? NO_PART : PART_COLOURS[part] || "#7f7f7f");

/** The parts that have channels in a network, in the order of its parts, each with its channels. */
function partsWithChannels(network) {
  const r = rolesOf(network);
  if (!r) return [];
  return r.parts.map((p) => [p, r.role.flatMap((x, c) => (x === p ? [c] : []))]).filter(([, cs]) => cs.length);
}

/** The grid's columns: channel ids in id order, or grouped by part (parts in order, "none" last, best IoU first). */
function columnOrder() {
  const m = state.model;
  const ids = Array.from({length: m.channels}, (_, c) => c);
  const r = rolesOf();
  if (!r || state.gridOrder !== "part") return ids;
  const rank = (c) => (r.role[c] === "none" ? r.parts.length : r.parts.indexOf(r.role[c]));
  const iou = (c) => (r.iou ? r.iou[c] : 0);
  return ids.sort((a, b) => rank(a) - rank(b) || iou(b) - iou(a) || a - b);
}

/** A channel's tooltip: "channel 12: fires on the mouth (IoU 0.42)". */
function channelTitle(c, network) {
  const r = rolesOf(network);
  if (!r) return `channel ${c}`;
  const iou = r.iou ? r.iou[c].toFixed(2) : null;
  if (r.role[c] === "none") return `channel ${c}: no one face part` + (iou ? ` (best IoU ${iou})` : "");
  return `channel ${c}: fires on the ${r.role[c]}` + (iou ? ` (IoU ${iou})` : "");
}

/** The grid's row of part colours under the channel ids (null when roles are unknown). */
function partRow(order) {
  const r = rolesOf();
  if (!r) return null;
  return el("tr", {className: "parts"}, el("th", {className: "attribute muted"}, "face part"),
    ...order.map((c) => el("th", {
      className: "part", title: channelTitle(c), "data-testid": `part-${c}`, dataset: {part: r.role[c]},
      style: {background: partColour(r.role[c])},
    })));
}

/** The legend under the grid: each part with its channel count; a click marks (or unmarks) its columns. */
function renderLegend() {
  const r = rolesOf();
  $("grid-tools").hidden = !r;
  if (!r) return;
  const none = r.role.filter((x) => x === "none").length;
  const entries = [...partsWithChannels().map(([p, cs]) => [p, cs.length]), ...(none ? [["none", none]] : [])];
  $("grid-legend").replaceChildren(...entries.map(([part, n]) => el("button", {
    type: "button", className: `legend${state.markedPart === part ? " marked" : ""}`, "data-testid": `legend-${part}`,
    title: part === "none" ? "channels that fire on no one face part" : `channels that fire on the ${part}`,
    onclick: () => { state.markedPart = state.markedPart === part ? null : part; renderGrid(); },
  }, el("span", {className: "swatch", style: {background: partColour(part)}}),
  `${part === "none" ? "no one part" : part} ${n}`)));
}

/** Where a channel fires, in words, from GET /api/channel/<c> ("fires": how its role was named). */
function firesWords(ch) {
  const f = ch.fires;
  if (!f) {
    return "The images do not say where face parts lie, so the channel has no part; the outline shows where " +
      "its activation is in its top 5% over the page's images.";
  }
  const top = `its top ${Math.round(100 * (1 - f.quantile))}% of activations`;
  const over = `over ${f.images} images`;
  if (ch.role === "none") {
    return `Fires on no one face part: the best, the ${f.best_part}, overlaps ${top} with IoU ${f.iou.toFixed(2)}, ` +
      `below the ${f.threshold} a part needs (${over}).`;
  }
  return `Fires on the ${ch.role}: ${top} overlap the ${ch.role} with IoU ${f.iou.toFixed(2)} (a part needs ` +
    `${f.threshold}; ${over}).`;
}

/** Channel c on the sample images: where it fires (activation, region outlined) and its mask for the attribute. */
function channelMaps(ch, samples, attribute) {
  const c = ch.channel;
  const row = (kind, label, query) => el("div", {className: "map-row"}, el("span", {className: "overlay-label"}, label),
    ...samples.map((i) => el("img", {
      src: `/api/channel/${c}/${kind}/${i}.png${query}`, alt: `${label}, image ${i}`, title: `image ${i}`,
      className: "channel-map", "data-testid": `${kind}-${c}-${i}`,
    })));
  const rows = [row("fires", "where it fires", "")];
  if (ch.has_masks) rows.push(row("mask", `mask (${attribute})`, `?attribute=${encodeURIComponent(attribute)}`));
  const top = Math.round(100 * (1 - (ch.fires ? ch.fires.quantile : 0.95)));
  return el("div", {className: "channel-maps"},
    el("p", {className: "muted"}, "On the attribute's sample images: where the channel fires (its activation, " +
      `half red at the threshold of its top ${top}%; outlined: that top ${top}%, the region compared with the ` +
      "face parts)" +
      (ch.has_masks ? `, and its attention mask for ${attribute}:` : ":")),
    el("div", {className: "sample-labels"}, el("span", {className: "overlay-label"}, ""),
      ...samples.map((i) => el("span", {className: "map-label"}, `#${i}`))),
    ...rows);
}

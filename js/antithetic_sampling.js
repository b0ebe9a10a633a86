// antithetic-sampling frontend extension.
//
// What it adds to the graph (nothing here changes what is sent to the server):
//  1. Results in the node body: after a metric / confidence-interval / probe node runs, the summary it sends
//     back (`ui.text`) is shown in a read-only panel inside the node, so the numbers sit next to the images.
//     The panel is never saved with the workflow nor sent with the prompt.
//  2. A design badge above the title bar of every node that carries a noise design (group size K, layout, mask,
//     RQMC points per replicate, the CI design, the metric pairing), so the designs that must agree can be read
//     off the canvas at a glance. It is a native LiteGraph node badge, laid out next to ComfyUI's own badges
//     (node id, node source) instead of on top of them, and it stays inside its node (see "badges" below).
//  3. A mismatch warning: the badge turns red and says why when a node's design differs from the noise node
//     feeding the same sampler (Antithetic Sampler vs Antithetic Latent Noise), or from the noise that made the
//     batch a confidence interval / metric node measures (for example a CI set to "antithetic pairs" on a batch
//     made with groups of 4). A pair metric on an independent (iid) batch is a baseline, not a mismatch.
//  4. One colour per pack category (noise / sampling / guidance / metrics) for pack nodes that have no colour
//     of their own: a colour set by the user or saved in the workflow is kept.
import { app } from "../../scripts/app.js";

const EXT_NAME = "antithetic_sampling.ui";
const CATEGORY_ROOT = "antithetic";
// Same palette as nodes/api_client/example_workflows.py (CATEGORY_COLORS), so the example workflows and
// nodes added by hand look alike.
const COLORS = {
  noise: { color: "#5A3A1A", bgcolor: "#8A5A2B" },
  sampling: { color: "#5A3A1A", bgcolor: "#8A5A2B" },
  guidance: { color: "#2A3F5A", bgcolor: "#3D5A80" },
  metrics: { color: "#1F4A37", bgcolor: "#2E6B4F" },
};
const BADGE_STYLE = { fgColor: "#F2C48D", bgColor: "#1B1B1B" };
const WARN_STYLE = { fgColor: "#FFFFFF", bgColor: "#B3261E" };
// Antithetic KSampler draws its antithetic noise itself: for the badges and checks it is a noise node.
const NOISE_NODES = new Set(["AntitheticLatentNoise", "SobolRQMCLatentBatch", "AntitheticKSampler"]);
const SAMPLER_NODES = new Set(["SamplerCustomAdvanced"]);
// KSampler-shaped nodes: they draw their own noise from the seed (iid), or take it from an optional `noise` input.
const SEEDED_SAMPLERS = new Set(["KSampler", "NoiseAwarenessGuidedKSampler", "NoiseShiftProbe"]);
const BADGED_NODES = new Set([
  ...NOISE_NODES,
  "AntitheticSampler",
  "PairDiversityMetric",
  "NoiseDesignConfidenceInterval",
]);
const SUMMARY_WIDGET = "antithetic_summary";
const BADGE_CACHE = Symbol("antithetic_badge");
const MAX_UPSTREAM = 12;

const packTypes = new Map(); // node type -> category leaf ("noise", "metrics", ...)

function typeOf(node) {
  return node?.comfyClass || node?.type || "";
}

function widgetValue(node, name) {
  const w = node?.widgets?.find((x) => x.name === name);
  return w ? w.value : undefined;
}

// Graph reads go through LiteGraph's node API only (getInputLink / isInputConnected / getInputNode /
// getOutputNodes): frontend 1.58 deprecates reading `input.link` and `output.links` directly, and all of these
// exist in 1.27 as well.
function slotIndex(node, name) {
  return node?.inputs ? node.inputs.findIndex((i) => i.name === name) : -1;
}

function isConnected(node, slot) {
  if (slot < 0) return false;
  try {
    return Boolean(node.isInputConnected(slot));
  } catch {
    return false;
  }
}

function upstreamOf(node, slot) {
  // The node on input `slot` (null when unconnected or the link dangles).
  if (!isConnected(node, slot)) return null;
  try {
    return node.getInputNode(slot) ?? null;
  } catch {
    return null; // a dangling link
  }
}

function inputNode(node, name) {
  return upstreamOf(node, slotIndex(node, name));
}

function hasLinkedInput(node, name) {
  return isConnected(node, slotIndex(node, name));
}

// ---------------------------------------------------------------------------------------------- designs
// A design is {kind, k, layout, masked, n}: kind "iid" | "antithetic" | "mirrored" | "rqmc" | "all" | "other";
// `k` the group size (2 = pairs), `n` the points per RQMC replicate.

function noiseDesign(node) {
  if (!node) return null;
  if (typeOf(node) === "AntitheticLatentNoise" || typeOf(node) === "AntitheticKSampler") {
    return {
      kind: "antithetic",
      k: Number(widgetValue(node, "group_size") ?? 2),
      layout: String(widgetValue(node, "layout") ?? "interleaved"),
      masked: hasLinkedInput(node, "mask"),
    };
  }
  if (typeOf(node) === "SobolRQMCLatentBatch") {
    return {
      kind: "rqmc",
      n: Number(widgetValue(node, "points_per_replicate") ?? 8),
      pairs: Boolean(widgetValue(node, "antithetic")),
    };
  }
  if (typeOf(node) === "RandomNoise" || SEEDED_SAMPLERS.has(typeOf(node))) return { kind: "iid" };
  return null;
}

function ownDesign(node) {
  // The design a node declares through its own widgets (null when it has none). Option strings are the
  // nodes' combo values (nodes/metric_nodes.py).
  switch (typeOf(node)) {
    case "AntitheticLatentNoise":
    case "AntitheticKSampler":
    case "SobolRQMCLatentBatch":
      return noiseDesign(node);
    case "AntitheticSampler":
      return {
        kind: "mirrored",
        k: Number(widgetValue(node, "group_size") ?? 2),
        layout: String(widgetValue(node, "layout") ?? "interleaved"),
        masked: hasLinkedInput(node, "mask"),
      };
    case "PairDiversityMetric": {
      const pairing = String(widgetValue(node, "pairing") ?? "interleaved");
      const role = "metric";
      if (pairing === "interleaved" || pairing === "halves") return { kind: "antithetic", k: 2, layout: pairing, role };
      if (pairing === "groups of K") {
        // groups of K consecutive images: the interleaved layout of the noise node
        return { kind: "antithetic", k: Number(widgetValue(node, "group_size") ?? 2), layout: "interleaved", role };
      }
      if (pairing === "all pairs") return { kind: "all", role };
      return { kind: "other", text: pairing, role };
    }
    case "NoiseDesignConfidenceInterval": {
      const design = String(widgetValue(node, "design") ?? "iid");
      const layout = String(widgetValue(node, "layout") ?? "interleaved");
      const size = Number(widgetValue(node, "group_size") ?? 2);
      const role = "ci";
      if (design === "iid") return { kind: "iid", role };
      if (design === "antithetic pairs") return { kind: "antithetic", k: 2, layout, role };
      if (design === "groups of K") return { kind: "antithetic", k: size, layout, role };
      if (design === "RQMC replicates") return { kind: "rqmc", n: size, role };
      return { kind: "other", text: design, role };
    }
    default:
      return null;
  }
}

function badgeText(d) {
  if (!d) return "";
  switch (d.kind) {
    case "iid":
      return "iid";
    case "all":
      return "all pairs";
    case "other":
      return String(d.text ?? "");
    case "rqmc":
      return `RQMC · n=${d.n}${d.pairs ? " · pairs" : ""}`;
    default: {
      const k = d.k === 2 ? "pairs" : `K=${d.k}`;
      const parts = [d.kind === "mirrored" ? `mirrored ${k}` : k, d.layout];
      if (d.masked) parts.push("masked");
      return parts.join(" · ");
    }
  }
}

function upstreamNoise(node) {
  // The noise that made the batch on the node's `images` input: walk upstream (breadth first) to the first
  // sampler and return what drew its noise: the node on a SamplerCustomAdvanced's (or a guided KSampler's)
  // `noise` input, else the KSampler-shaped node itself (Antithetic KSampler, or a seeded one: iid).
  const start = inputNode(node, "images");
  if (!start) return null;
  const seen = new Set();
  let frontier = [start];
  for (let depth = 0; depth < MAX_UPSTREAM && frontier.length; depth++) {
    const next = [];
    for (const n of frontier) {
      if (!n || seen.has(n.id)) continue;
      seen.add(n.id);
      if (SAMPLER_NODES.has(typeOf(n))) {
        const src = inputNode(n, "noise");
        if (src) return src;
      }
      if (typeOf(n) === "AntitheticKSampler") return n;
      if (SEEDED_SAMPLERS.has(typeOf(n))) return inputNode(n, "noise") ?? n;
      for (let slot = 0; slot < (n.inputs?.length ?? 0); slot++) {
        const up = upstreamOf(n, slot);
        if (up) next.push(up);
      }
    }
    frontier = next;
  }
  return null;
}

function samplerPartnerNoise(node) {
  // For an Antithetic Sampler: the noise node feeding the SamplerCustomAdvanced it is plugged into.
  let targets = null;
  try {
    targets = node.getOutputNodes(0);
  } catch {
    targets = null; // a node not (yet) in a graph
  }
  for (const target of targets ?? []) {
    if (target && SAMPLER_NODES.has(typeOf(target))) {
      const src = inputNode(target, "noise");
      if (src) return src;
    }
  }
  return null;
}

function mismatch(node, d) {
  // A short reason when the node's design disagrees with the noise that made its batch, else "".
  if (!d || NOISE_NODES.has(typeOf(node))) return "";
  if (typeOf(node) === "AntitheticSampler") {
    const nd = noiseDesign(samplerPartnerNoise(node));
    if (!nd || nd.kind !== "antithetic") return "";
    if (nd.k !== d.k) return `noise has K=${nd.k}`;
    if (nd.layout !== d.layout) return `noise is ${nd.layout}`;
    if (nd.masked !== d.masked) return nd.masked ? "noise is masked" : "noise has no mask";
    return "";
  }
  const nd = noiseDesign(upstreamNoise(node));
  if (!nd || d.kind === "all" || d.kind === "other") return "";
  const batch = `batch is ${badgeText(nd)}`;
  if (d.kind === "iid") return nd.kind === "iid" ? "" : batch;
  if (d.kind === "rqmc") {
    if (nd.kind !== "rqmc") return batch;
    return d.n !== nd.n ? `noise has n=${nd.n}` : "";
  }
  if (d.kind === "antithetic") {
    if (nd.kind === "iid" && d.role === "metric") return ""; // the same pairs of an iid batch: a baseline
    if (nd.kind !== "antithetic") return batch;
    if (nd.k !== d.k) return `noise has K=${nd.k}`;
    if (nd.layout !== d.layout) return `noise is ${nd.layout}`;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------- badges
// A badge that fits its node. LiteGraph draws a node's badges in one row above the title bar, right-aligned
// (LGraphNode.drawBadges: the row starts at node width minus the sum of the badge widths), so a label wider than
// the room left by the frontend's own badges (node id, node source) would start left of the node. This badge asks
// the frontend how much room the others take (a measuring pass of drawBadges on an offscreen context, with this
// badge drawn at zero width), then wraps its label onto as many lines as it needs inside that room; the row is
// bottom-aligned, so extra lines grow upwards. The Vue renderer (frontend >= 1.4x) does not draw LGraphBadges:
// it renders `text` as a chip and passes the remaining own properties on as attributes, so `title` carries the
// full label (hover tooltip) and `style` lets a long chip shrink to the node and end in an ellipsis.

const LINE_HEIGHT = 15;
const MIN_BADGE_ROOM = 80;
let measuringCtx = null;

function offscreenCtx() {
  if (!measuringCtx) measuringCtx = document.createElement("canvas").getContext("2d");
  return measuringCtx;
}

function wrapLabel(ctx, text, room) {
  // Greedy word wrap on spaces; a word longer than the room is cut by characters.
  const lines = [];
  let line = "";
  const fits = (t) => ctx.measureText(t).width <= room;
  for (const word of text.split(" ")) {
    const candidate = line ? `${line} ${word}` : word;
    if (fits(candidate)) {
      line = candidate;
      continue;
    }
    if (line) lines.push(line);
    line = "";
    let rest = word;
    while (rest && !fits(rest)) {
      let n = rest.length - 1;
      while (n > 1 && !fits(rest.slice(0, n))) n--;
      lines.push(rest.slice(0, n));
      rest = rest.slice(n);
    }
    line = rest;
  }
  if (line) lines.push(line);
  return lines.length ? lines : [""];
}

// Vue renderer: the chips of a node sit in groups inside one row as wide as the node; a flex item does not shrink
// below its content by default, so the group holding our chip may shrink (and the chip ends in an ellipsis).
const VUE_BADGE_CSS = `[data-node-id] :has(> [data-antithetic-badge]) { min-width: 0; flex-shrink: 1; }`;

function installVueBadgeCss() {
  if (document.getElementById("antithetic-badge-css")) return;
  const style = document.createElement("style");
  style.id = "antithetic-badge-css";
  style.textContent = VUE_BADGE_CSS;
  document.head.appendChild(style);
}

let FittedBadge = null;

function fittedBadgeClass() {
  if (FittedBadge) return FittedBadge;
  FittedBadge = class extends globalThis.LGraphBadge {
    constructor(node, options) {
      super(options);
      this.title = options.text; // Vue renderer: an attribute of the chip, i.e. its hover tooltip
      this["data-antithetic-badge"] = options.warn ? "warn" : "design"; // Vue renderer: hook for VUE_BADGE_CSS
      this.style = {
        display: "block",
        minWidth: "0",
        maxWidth: "100%",
        overflow: "hidden",
        textOverflow: "ellipsis",
        whiteSpace: "nowrap",
        lineHeight: "1.5rem",
      };
      // Not enumerable: the Vue renderer would turn them into attributes of the chip.
      const hidden = (name, value) => Object.defineProperty(this, name, { value, writable: true, enumerable: false });
      hidden("antithetic", { warn: Boolean(options.warn) }); // tells a test (tests/test_browser.py) ours from others
      hidden("node", node);
      hidden("lines", [options.text]);
      hidden("measuring", false);
      hidden("roomCache", null);
    }

    room() {
      // Width left for this badge: the node's width minus the frontend's badges in the same row and the gaps.
      const node = this.node;
      const width = node.width ?? node.size?.[0] ?? 0;
      if (typeof node.drawBadges !== "function") return width;
      // once per canvas frame and width: drawBadges asks for our width more than once per frame
      const key = `${app.canvas?.frame ?? performance.now()}:${width}`;
      if (this.roomCache?.key === key) return this.roomCache.room;
      const ctx = offscreenCtx();
      const boxes = [];
      const record = (_x, _y, w) => boxes.push(w);
      ctx.roundRect = record;
      ctx.rect = record;
      this.measuring = true;
      try {
        node.drawBadges(ctx);
      } catch {
        return width;
      } finally {
        this.measuring = false;
        delete ctx.roundRect;
        delete ctx.rect;
      }
      const GAP = 2;
      const others = boxes.reduce((a, w) => a + w + GAP, 0);
      const room = Math.max(MIN_BADGE_ROOM, width - others - GAP);
      this.roomCache = { key, room };
      return room;
    }

    getWidth(ctx) {
      if (this.measuring) return 0;
      if (!this.visible) return 0;
      const { font } = ctx;
      ctx.font = `${this.fontSize}px sans-serif`;
      const natural = ctx.measureText(this.text).width + this.padding * 2;
      const room = this.room();
      if (natural <= room) {
        this.lines = [this.text];
        this.height = 20;
      } else {
        this.lines = wrapLabel(ctx, this.text, room - this.padding * 2);
        this.height = 20 + (this.lines.length - 1) * LINE_HEIGHT;
      }
      const width = Math.max(...this.lines.map((l) => ctx.measureText(l).width)) + this.padding * 2;
      ctx.font = font;
      return width;
    }

    draw(ctx, x, y) {
      if (this.measuring || !this.visible) return;
      const width = this.getWidth(ctx);
      const { font, fillStyle, textBaseline, textAlign } = ctx;
      x += this.xOffset;
      y += this.yOffset;
      ctx.fillStyle = this.bgColor;
      ctx.beginPath();
      if (ctx.roundRect) ctx.roundRect(x, y, width, this.height, this.cornerRadius);
      else ctx.rect(x, y, width, this.height);
      ctx.fill();
      ctx.font = `${this.fontSize}px sans-serif`;
      ctx.fillStyle = this.fgColor;
      ctx.textBaseline = "middle";
      ctx.textAlign = "left";
      this.lines.forEach((line, i) => ctx.fillText(line, x + this.padding, y + 10 + 1 + i * LINE_HEIGHT));
      ctx.font = font;
      ctx.fillStyle = fillStyle;
      ctx.textBaseline = textBaseline;
      ctx.textAlign = textAlign;
    }
  };
  return FittedBadge;
}

function designBadge(node) {
  // The node's badge (rebuilt only when its label changes); empty text = not drawn.
  let label = "";
  let warn = false;
  try {
    const d = ownDesign(node);
    const text = badgeText(d);
    const why = text ? mismatch(node, d) : "";
    warn = Boolean(why);
    label = why ? `⚠ ${text} (${why})` : text;
  } catch {
    label = "";
  }
  const cached = node[BADGE_CACHE];
  if (cached && cached.label === label) return cached.badge;
  const Badge = fittedBadgeClass();
  const badge = new Badge(node, { text: label, warn, ...(warn ? WARN_STYLE : BADGE_STYLE) });
  node[BADGE_CACHE] = { label, badge };
  return badge;
}

// ---------------------------------------------------------------------------------------------- results

function summaryText(message) {
  const v = message?.text;
  if (v == null) return "";
  const parts = Array.isArray(v) ? v : [v];
  return parts
    .map((x) => (typeof x === "string" ? x : JSON.stringify(x)))
    .join("\n")
    .trim();
}

function showSummary(node, text) {
  let widget = node.widgets?.find((w) => w.name === SUMMARY_WIDGET);
  if (!widget) {
    const el = document.createElement("pre");
    el.className = "antithetic-summary";
    Object.assign(el.style, {
      margin: "0",
      padding: "6px 8px",
      font: "11px/1.35 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      whiteSpace: "pre-wrap",
      overflow: "auto",
      color: "#E8E8E8",
      background: "rgba(0,0,0,0.35)",
      borderRadius: "6px",
      userSelect: "text",
      boxSizing: "border-box",
    });
    widget = node.addDOMWidget(SUMMARY_WIDGET, "antithetic_summary", el, {
      serialize: false, // neither saved in the workflow nor sent with the prompt
      hideOnZoom: false,
      getValue: () => el.textContent,
      setValue: (v) => {
        el.textContent = v ?? "";
      },
      getMinHeight: () => 60,
    });
    widget.serialize = false;
  }
  widget.element.textContent = text;
  const lines = Math.min(18, text.split("\n").length);
  const want = Math.max(node.size[1], node.computeSize()[1] + lines * 15 - 40);
  node.setSize([Math.max(node.size[0], 320), want]);
  node.setDirtyCanvas(true, true);
}

// ---------------------------------------------------------------------------------------------- extension

app.registerExtension({
  name: EXT_NAME,

  setup() {
    installVueBadgeCss();
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const category = String(nodeData?.category ?? "");
    if (category !== CATEGORY_ROOT && !category.startsWith(`${CATEGORY_ROOT}/`)) return;
    packTypes.set(nodeData.name, category.split("/")[1] ?? "noise");

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message, ...rest) {
      const r = onExecuted?.apply(this, [message, ...rest]);
      const text = summaryText(message);
      if (text) showSummary(this, text);
      return r;
    };
  },

  nodeCreated(node) {
    // The frontend calls nodeCreated from the node's constructor, before LiteGraph sets node.type (still "").
    const type = typeOf(node);
    const leaf = packTypes.get(type);
    if (!leaf) return;
    const palette = COLORS[leaf];
    // nodeCreated runs before a loaded workflow's node is configured, so a saved colour still wins.
    if (palette && !node.color && !node.bgcolor) {
      node.color = palette.color;
      node.bgcolor = palette.bgcolor;
    }
    // A native node badge (window.LGraphBadge, node.badges): LiteGraph lays it out next to the frontend's own.
    if (Array.isArray(node.badges) && typeof globalThis.LGraphBadge === "function" && BADGED_NODES.has(type)) {
      node.badges.push(() => designBadge(node));
    }
  },
});

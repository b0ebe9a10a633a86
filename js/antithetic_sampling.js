// antithetic-sampling frontend extension.
//
// What it adds to the graph (nothing here changes what is sent to the server):
//  1. Results in the node body: after a metric / confidence-interval / probe node runs, the summary it sends
//     back (`ui.text`) is shown in a read-only panel inside the node, so the numbers sit next to the images.
//  2. A design badge in the title bar of every node that carries a noise design (group size K, layout, mask,
//     RQMC points per replicate, the CI design, the metric pairing), so the designs that must agree can be read
//     off the canvas at a glance.
//  3. A mismatch warning: the badge turns red when a node's design differs from the noise node feeding the same
//     sampler (Antithetic Sampler vs Antithetic Latent Noise), or from the noise upstream of a metric / CI node
//     (for example a CI set to "antithetic pairs" on a batch made with groups of 4).
//  4. One colour per pack category (noise / sampling / guidance / metrics) for new nodes, unless the user or the
//     workflow already set a colour.
import { app } from "../../scripts/app.js";

const EXT_NAME = "antithetic_sampling.ui";
const CATEGORY_ROOT = "antithetic";
const COLORS = {
  noise: { color: "#5A3A1A", bgcolor: "#8A5A2B" },
  sampling: { color: "#5A3A1A", bgcolor: "#8A5A2B" },
  guidance: { color: "#2A3F5A", bgcolor: "#3D5A80" },
  metrics: { color: "#1F4A37", bgcolor: "#2E6B4F" },
};
const NOISE_NODES = new Set(["AntitheticLatentNoise", "SobolRQMCLatentBatch"]);
const SAMPLER_NODES = new Set(["SamplerCustomAdvanced", "SamplerCustom"]);
const SUMMARY_WIDGET = "antithetic_summary";
const MAX_UPSTREAM = 12;

const packTypes = new Map(); // node type -> category leaf ("noise", "metrics", ...)

function widgetValue(node, name) {
  const w = node?.widgets?.find((x) => x.name === name);
  return w ? w.value : undefined;
}

function inputNode(node, name) {
  if (!node?.inputs) return null;
  const slot = node.inputs.findIndex((i) => i.name === name);
  if (slot < 0 || node.inputs[slot].link == null) return null;
  try {
    return node.getInputNode(slot) ?? null;
  } catch {
    return null;
  }
}

function hasLinkedInput(node, name) {
  const inp = node?.inputs?.find((i) => i.name === name);
  return inp != null && inp.link != null;
}

// ---------------------------------------------------------------------------------------------- designs
// A design is {kind, k, layout, masked, n}; `k` is the group size (1 = iid), `n` points per RQMC replicate.

function noiseDesign(node) {
  if (!node) return null;
  if (node.type === "AntitheticLatentNoise") {
    return {
      kind: "antithetic",
      k: Number(widgetValue(node, "group_size") ?? 2),
      layout: String(widgetValue(node, "layout") ?? "interleaved"),
      masked: hasLinkedInput(node, "mask"),
    };
  }
  if (node.type === "SobolRQMCLatentBatch") {
    const anti = Boolean(widgetValue(node, "antithetic"));
    return {
      kind: "rqmc",
      k: anti ? 2 : 1,
      layout: "interleaved",
      n: Number(widgetValue(node, "points_per_replicate") ?? 8),
      masked: false,
    };
  }
  if (node.type === "RandomNoise") return { kind: "iid", k: 1, layout: "interleaved", masked: false };
  return null;
}

function ownDesign(node) {
  // The design a node declares through its own widgets (null when it has none).
  if (NOISE_NODES.has(node.type)) return noiseDesign(node);
  if (node.type === "AntitheticSampler") {
    return {
      kind: "mirrored",
      k: Number(widgetValue(node, "group_size") ?? 2),
      layout: String(widgetValue(node, "layout") ?? "interleaved"),
      masked: hasLinkedInput(node, "mask"),
      sampler: String(widgetValue(node, "sampler_name") ?? ""),
    };
  }
  const design = widgetValue(node, "design") ?? widgetValue(node, "pairing");
  if (design === undefined) return null;
  const text = String(design).toLowerCase();
  const k = Number(widgetValue(node, "group_size") ?? widgetValue(node, "k") ?? 2);
  const layout = String(widgetValue(node, "layout") ?? "interleaved");
  const n = Number(widgetValue(node, "points_per_replicate") ?? widgetValue(node, "n_per_replicate") ?? 0);
  if (text.includes("iid") || text.includes("independent")) return { kind: "iid", k: 1, layout, text };
  if (text.includes("rqmc") || text.includes("replicate")) return { kind: "rqmc", k: 1, n, layout, text };
  if (text.includes("all")) return { kind: "all", k: 0, layout, text };
  if (text.includes("group") || text.includes("k")) return { kind: "antithetic", k, layout, text };
  if (text.includes("half")) return { kind: "antithetic", k: 2, layout: "halves", text };
  if (text.includes("pair") || text.includes("interleaved")) return { kind: "antithetic", k: 2, layout, text };
  return { kind: "other", k: 0, layout, text };
}

function badgeText(node, d) {
  if (!d) return "";
  if (d.kind === "rqmc") {
    const n = d.n ? `n=${d.n}` : "RQMC";
    return d.k === 2 ? `${n} · RQMC + pairs` : `${n} per replicate`;
  }
  if (d.kind === "iid") return "iid";
  if (d.kind === "all") return "all pairs";
  if (d.kind === "other") return String(d.text ?? "");
  const k = d.k === 2 ? "pairs" : `K=${d.k}`;
  const parts = [d.kind === "mirrored" ? `mirrored ${k}` : k, d.layout];
  if (d.masked) parts.push("masked");
  return parts.join(" · ");
}

function upstreamNoise(node) {
  // Walk upstream (breadth first) until a sampler with a NOISE input is found; return that noise node.
  const seen = new Set();
  let frontier = [node];
  for (let depth = 0; depth < MAX_UPSTREAM && frontier.length; depth++) {
    const next = [];
    for (const n of frontier) {
      if (!n || seen.has(n.id)) continue;
      seen.add(n.id);
      if (n !== node && SAMPLER_NODES.has(n.type)) {
        const src = inputNode(n, "noise");
        if (src) return src;
      }
      if (n !== node && NOISE_NODES.has(n.type)) return n;
      for (let slot = 0; slot < (n.inputs?.length ?? 0); slot++) {
        if (n.inputs[slot].link == null) continue;
        if (n === node && n.type === "AntitheticSampler") continue;
        try {
          const up = n.getInputNode(slot);
          if (up) next.push(up);
        } catch {
          /* a dangling link: ignore */
        }
      }
    }
    frontier = next;
  }
  return null;
}

function samplerPartnerNoise(node) {
  // For an Antithetic Sampler: the noise node feeding the same SamplerCustomAdvanced.
  const graph = node.graph ?? app.graph;
  const outs = node.outputs?.[0]?.links ?? [];
  for (const linkId of outs) {
    const link = graph?.links?.get ? graph.links.get(linkId) : graph?.links?.[linkId];
    const target = link ? graph.getNodeById(link.target_id) : null;
    if (target && SAMPLER_NODES.has(target.type)) {
      const src = inputNode(target, "noise");
      if (src) return src;
    }
  }
  return null;
}

function mismatch(node, d) {
  // A short reason when the node's design disagrees with the noise that made its batch, else "".
  if (!d || NOISE_NODES.has(node.type)) return "";
  const src = node.type === "AntitheticSampler" ? samplerPartnerNoise(node) : upstreamNoise(node);
  const nd = noiseDesign(src);
  if (!nd) return "";
  if (node.type === "AntitheticSampler") {
    if (nd.kind !== "antithetic") return "";
    if (nd.k !== d.k) return `noise has K=${nd.k}`;
    if (nd.layout !== d.layout) return `noise is ${nd.layout}`;
    if (nd.masked !== d.masked) return nd.masked ? "noise is masked" : "noise has no mask";
    return "";
  }
  if (d.kind === "all" || d.kind === "other") return "";
  if (d.kind === "iid") return nd.kind === "iid" ? "" : `batch is ${badgeText(src, nd)}`;
  if (d.kind === "rqmc") {
    if (nd.kind !== "rqmc") return `batch is ${badgeText(src, nd)}`;
    return d.n && nd.n && d.n !== nd.n ? `noise has n=${nd.n}` : "";
  }
  if (d.kind === "antithetic") {
    if (nd.kind !== "antithetic") return `batch is ${badgeText(src, nd)}`;
    if (nd.k !== d.k) return `noise has K=${nd.k}`;
    if (nd.layout !== d.layout) return `noise is ${nd.layout}`;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------- drawing

function drawBadge(node, ctx) {
  if (node.flags?.collapsed) return;
  let d;
  try {
    d = ownDesign(node);
  } catch {
    return;
  }
  const text = badgeText(node, d);
  if (!text) return;
  const why = mismatch(node, d);
  const label = why ? `⚠ ${text} (${why})` : text;
  const titleH = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  ctx.save();
  ctx.font = "11px sans-serif";
  const w = ctx.measureText(label).width + 12;
  const h = 16;
  const x = Math.max(8, node.size[0] - w - 8);
  const y = -titleH - h - 4;
  ctx.fillStyle = why ? "#B3261E" : "rgba(20,20,20,0.75)";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, w, h, 8);
  else ctx.rect(x, y, w, h);
  ctx.fill();
  ctx.fillStyle = why ? "#FFFFFF" : "#F2C48D";
  ctx.textBaseline = "middle";
  ctx.fillText(label, x + 6, y + h / 2 + 0.5);
  ctx.restore();
}

// ---------------------------------------------------------------------------------------------- results

function summaryText(message) {
  if (!message) return "";
  const parts = [];
  for (const key of ["text", "summary", "antithetic_summary"]) {
    const v = message[key];
    if (v == null) continue;
    if (Array.isArray(v)) parts.push(...v.map((x) => (typeof x === "string" ? x : JSON.stringify(x))));
    else parts.push(typeof v === "string" ? v : JSON.stringify(v));
  }
  return parts.join("\n").trim();
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
      serialize: false,
      hideOnZoom: false,
      getValue: () => el.textContent,
      setValue: (v) => {
        el.textContent = v ?? "";
      },
      getMinHeight: () => 60,
    });
    widget.serialize = false;
    widget.element = el;
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

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const category = String(nodeData?.category ?? "");
    if (category !== CATEGORY_ROOT && !category.startsWith(`${CATEGORY_ROOT}/`)) return;
    const leaf = category.split("/")[1] ?? "noise";
    packTypes.set(nodeData.name, leaf);

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx, ...rest) {
      const r = onDrawForeground?.apply(this, [ctx, ...rest]);
      drawBadge(this, ctx);
      return r;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message, ...rest) {
      const r = onExecuted?.apply(this, [message, ...rest]);
      const text = summaryText(message);
      if (text) showSummary(this, text);
      return r;
    };
  },

  nodeCreated(node) {
    const leaf = packTypes.get(node.type ?? node.comfyClass);
    if (!leaf) return;
    const palette = COLORS[leaf];
    if (palette && !node.color && !node.bgcolor) {
      node.color = palette.color;
      node.bgcolor = palette.bgcolor;
    }
  },
});

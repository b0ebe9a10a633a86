"""Plots of the pack's nodes and demo, drawn with matplotlib (Agg backend, no GUI, no pyplot state).

Every helper returns a :class:`matplotlib.figure.Figure` with a title that says what to look at, labelled axes
(with units where there are any), a legend for every line or marker that needs one, and reference lines (the
reference value of an estimate, σ̂/σ = 1, the guidance band). Sizes are in pixels at 100 dpi. ComfyUI fits an
IMAGE preview into its node (about 350 px wide at 100 % zoom), so a node plot is one landscape panel of about
600 px with 13–14 pt text, which stays near 10 px on screen.

:func:`render` turns a figure into an RGB array, :func:`to_image_tensor` one or more figures into a ComfyUI IMAGE
tensor [1, H, W, 3] float32 0..1 (several panels side by side), :func:`save_png` writes a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import wraps

import numpy as np

__all__ = [
    "DPI", "PALETTE", "forest_plot", "hstack", "image_grid", "image_grids", "interval_plot", "line_plot",
    "noise_shift_plot", "pair_scatter", "render", "save_png", "to_image_tensor", "vstack",
]

DPI = 100
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
REFERENCE = "#2ca02c"  # reference values are green everywhere
STYLE = {
    "font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 11, "xtick.labelsize": 11.5,
    "ytick.labelsize": 11.5, "axes.grid": True, "grid.color": "#e3e3e3", "grid.linewidth": 0.8,
    "axes.spines.top": False, "axes.spines.right": False, "figure.facecolor": "white", "axes.facecolor": "white",
    "savefig.facecolor": "white", "legend.framealpha": 0.9,
}


def _styled(fn):
    """Create the figure's artists under the pack's style (font sizes are fixed when a text is created)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _figure(size: tuple[int, int], **subplot_kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _data_artists_out_of_layout(fig) -> None:
    """Bars, frames, markers and lines are clipped to their axes, so the layout need not measure each of them:
    with hundreds of pairs that measuring, not the drawing, is what makes a plot slow."""
    for ax in fig.axes:
        for artist in (*ax.patches, *ax.collections, *ax.lines, *ax.images):
            artist.set_in_layout(False)


def render(fig) -> np.ndarray:
    """Figure -> uint8 RGB array [H, W, 3]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    _data_artists_out_of_layout(fig)
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(fig, path) -> None:
    _data_artists_out_of_layout(fig)
    fig.savefig(path, dpi=DPI)


def _array(panel) -> np.ndarray:
    if isinstance(panel, np.ndarray):
        return panel
    if hasattr(panel, "canvas") and hasattr(panel, "savefig"):
        return render(panel)
    return np.asarray(panel.convert("RGB"))  # a PIL image


def hstack(panels: Sequence, gap: int = 8) -> np.ndarray:
    """Figures / arrays side by side on white, top-aligned."""
    arrs = [_array(p) for p in panels]
    h = max(a.shape[0] for a in arrs)
    out = np.full((h, sum(a.shape[1] for a in arrs) + gap * (len(arrs) - 1), 3), 255, np.uint8)
    x = 0
    for a in arrs:
        out[: a.shape[0], x: x + a.shape[1]] = a
        x += a.shape[1] + gap
    return out


def vstack(panels: Sequence, gap: int = 6) -> np.ndarray:
    """Figures / arrays one below the other on white, left-aligned."""
    arrs = [_array(p) for p in panels]
    w = max(a.shape[1] for a in arrs)
    out = np.full((sum(a.shape[0] for a in arrs) + gap * (len(arrs) - 1), w, 3), 255, np.uint8)
    y = 0
    for a in arrs:
        out[y: y + a.shape[0], : a.shape[1]] = a
        y += a.shape[0] + gap
    return out


def to_image_tensor(panels):
    """Figure(s) / array(s) -> ComfyUI IMAGE tensor [1, H, W, 3] float32 0..1 (several panels side by side)."""
    import torch

    arr = _array(panels) if not isinstance(panels, (list, tuple)) else hstack(panels)
    return torch.from_numpy(arr.astype(np.float32) / 255.0).unsqueeze(0)


def _wrap(text: str, width_px: float, points: float = 14.0) -> str:
    """Wrap a title to the figure's width (about 0.55 em per character), keeping its explicit line breaks."""
    import textwrap

    chars = max(20, int(0.85 * width_px / (points * DPI / 72 * 0.6)))
    return "\n".join(textwrap.fill(line, chars) for line in str(text).split("\n"))


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return v[np.isfinite(v)]


# --------------------------------------------------------------------------------------------- plots


@_styled
def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str = "", xlabel: str = "",
              ylabel: str = "", size: tuple[int, int] = (560, 340), logy: bool = False,
              hlines: Sequence[tuple[float, str]] = (), ylim: tuple[float, float] | None = None,
              styles: dict[str, dict] | None = None, legend_below: bool = False, legend_loc: str = "best"):
    """Lines with markers; ``series`` maps a legend label to (xs, ys); ``hlines`` [(y, label)] are dashed grey
    reference lines with legend entries; ``styles`` per label overrides matplotlib line keywords. The legend sits
    inside the axes at ``legend_loc`` (a matplotlib location), or below them with ``legend_below``."""
    fig = _figure(size)
    ax = fig.subplots()
    for k, (label, (xs, ys)) in enumerate(series.items()):
        kw = {"color": PALETTE[k % len(PALETTE)], "marker": "o", "markersize": 4, "linewidth": 2}
        kw.update((styles or {}).get(label, {}))
        ax.plot(np.asarray(xs, float), np.asarray(ys, float), label=label, **kw)
    for y, label in hlines:
        ax.axhline(y, color="#555555", linestyle="--", linewidth=1.2, label=label)
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (log scale)" if logy and ylabel else ""))
    ax.set_title(_wrap(title, size[0]))
    if series or hlines:
        if legend_below:
            fig.legend(loc="outside lower center", ncol=2, fontsize=11)
        else:
            ax.legend(loc=legend_loc)
    return fig


def icon(pairs: Sequence, size: int = 256, gap: int = 6):
    """A square icon: each pair of images [H, W] (0..1) side by side, one pair per row, on a dark background."""
    rows = len(pairs)
    cell = (size - gap * (rows + 1)) // rows
    out = np.full((size, size, 3), 24, np.uint8)
    frame = np.array([int(PALETTE[0][i: i + 2], 16) for i in (1, 3, 5)], np.uint8)  # the grids' pair frame
    for r, pair in enumerate(pairs):
        y = gap + r * (cell + gap)
        out[y - gap // 2: y + cell + gap // 2, gap // 2: size - gap // 2] = frame
        out[y: y + cell, gap: size - gap] = 24
        for c, img in enumerate(pair):
            a = np.asarray(img, dtype=np.float64)
            h, w = a.shape[:2]
            rep = max(1, min(cell // h, (size - 3 * gap) // 2 // w))
            tile = np.repeat(np.repeat(np.clip(a, 0, 1), rep, 0), rep, 1)
            x = gap + c * (size - gap) // 2
            out[y: y + tile.shape[0], x: x + tile.shape[1]] = (tile[..., None] * 255).round().astype(np.uint8)
    return out


@_styled
def interval_plot(item_x, item_y, unit_x, unit_y, estimate: float, low: float, high: float, title: str = "",
                  naive: tuple[float, float] | None = None, ylabel: str = "value", xlabel: str = "unit",
                  confidence: float = 0.95, unit_label: str = "unit mean", size: tuple[int, int] = (600, 460)):
    """Per-image values (grey dots), unit means (blue dots), the estimate (blue line) and its interval (blue band);
    ``naive`` draws the interval independent images would give at the same N (red dashes) for comparison."""
    fig = _figure(size)
    ax = fig.subplots()
    pct = f"{100 * confidence:.3g} %"
    ax.axhspan(low, high, color=PALETTE[0], alpha=0.18, label=f"{pct} interval [{low:.4g}, {high:.4g}]")
    ax.axhline(estimate, color=PALETTE[0], linewidth=2, label=f"estimate {estimate:.4g}")
    if naive is not None:
        ax.axhline(naive[0], color=PALETTE[1], linestyle="--", linewidth=1.5,
                   label=f"{pct} interval of iid images at the same N")
        ax.axhline(naive[1], color=PALETTE[1], linestyle="--", linewidth=1.5)
    ax.scatter(np.asarray(item_x, float), np.asarray(item_y, float), s=14, color="#8a8a8a", label="each image",
               zorder=3)
    ax.scatter(np.asarray(unit_x, float), np.asarray(unit_y, float), s=36, color=PALETTE[0], label=unit_label,
               zorder=4, edgecolor="white", linewidth=0.6)
    vals = np.concatenate([_finite(item_y), _finite(unit_y), _finite([low, high, estimate]),
                           _finite(naive if naive is not None else [])])
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.08 * (hi - lo) or 0.05 * max(abs(hi), 1e-6)
        ax.set_ylim(lo - pad, hi + pad)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(8, integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title, size[0]))
    fig.legend(loc="outside lower center", ncol=2, fontsize=11)
    return fig


@_styled
def forest_plot(rows: Sequence[tuple[str, float, float, float]], title: str = "", xlabel: str = "",
                reference: float | None = None, reference_band: tuple[float, float] | None = None,
                reference_label: str = "reference value", notes: Sequence[str] | None = None,
                size: tuple[int, int] = (720, 360)):
    """One row per estimate: the point and its interval; a green reference line (and shaded band) to compare with;
    ``notes`` are printed to the right of each row (e.g. the width relative to the first row)."""
    fig = _figure(size)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    if reference_band is not None:
        ax.axvspan(*reference_band, color=REFERENCE, alpha=0.12, label=f"{reference_label}: 95 % error")
    if reference is not None:
        ax.axvline(reference, color=REFERENCE, linestyle="--", linewidth=2, label=f"{reference_label} {reference:.4f}")
    for k, (_label, est, lo, hi) in enumerate(rows):
        ax.errorbar([est], [y[k]], xerr=[[est - lo], [hi - est]], fmt="o", color=PALETTE[0], ecolor=PALETTE[0],
                    capsize=5, linewidth=2.5, markersize=7, label="estimate ± 95 % interval" if k == 0 else None)
    from matplotlib.ticker import MaxNLocator

    ax.set_yticks(y, [r[0] for r in rows])
    ax.grid(axis="y", visible=False)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    lows = [r[2] for r in rows] + ([reference] if reference is not None else [])
    highs = [r[3] for r in rows] + ([reference] if reference is not None else [])
    span = max(highs) - min(lows) or 1e-3
    ax.set_xlim(min(lows) - 0.08 * span, max(highs) + 0.08 * span)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    if notes:
        ax2 = ax.twinx()
        ax2.set_ylim(ax.get_ylim())
        ax2.set_yticks(y, list(notes))
        ax2.grid(False)
        ax2.spines["right"].set_visible(False)
        ax2.tick_params(axis="y", length=0)
    ax.set_xlabel(xlabel)
    ax.set_title(_wrap(title, size[0]))
    fig.legend(loc="outside lower center", ncol=2, fontsize=11)
    return fig


@_styled
def noise_shift_plot(curves: dict[str, dict], title: str = "", band_steps: Sequence[int] = (),
                     band_label: str = "guidance band", sigmas: Sequence[float] | None = None,
                     size: tuple[int, int] = (680, 520)):
    """σ̂/σ per step: one line per curve ``{label: {"step", "ratio", optional "low"/"high" (per-image range),
    optional "corrected" (bool per step)}}``, a dashed line at 1 (no shift) and the steps of the guidance band
    shaded; ``sigmas`` (the nominal level of every step) labels a second x axis on top. The y range follows the
    data (with 1 inside it), so a shift of a few percent is visible."""
    fig = _figure(size)
    ax = fig.subplots()
    if band_steps:
        a, b = min(band_steps), max(band_steps)
        ax.axvspan(a - 0.5, b + 0.5, color="#f2c14e", alpha=0.22, label=band_label)
    ax.axhline(1.0, color="#333333", linestyle="--", linewidth=1.3, label="σ̂/σ = 1: no noise shift")
    vals = [1.0]
    for k, (label, c) in enumerate(curves.items()):
        col = PALETTE[k % len(PALETTE)]
        steps = np.asarray(c["step"], float)
        ratio = np.asarray([np.nan if r is None else r for r in c["ratio"]], float)
        if c.get("low") is not None and c.get("high") is not None:
            lo = np.asarray([np.nan if r is None else r for r in c["low"]], float)
            hi = np.asarray([np.nan if r is None else r for r in c["high"]], float)
            ax.vlines(steps, lo, hi, color=col, alpha=0.35, linewidth=4, label=f"{label}: per-image range")
            vals += list(_finite(lo)) + list(_finite(hi))
        ax.plot(steps, ratio, "o-", color=col, linewidth=2, markersize=4.5, label=f"{label}: batch mean")
        vals += list(_finite(ratio))
        corrected = c.get("corrected")
        if corrected is not None and any(corrected):
            sel = np.asarray(corrected, bool)
            ax.plot(steps[sel], ratio[sel], "o", mfc="none", mec="#b00000", markersize=11, mew=1.8,
                    label="corrected by the guidance")
    lo, hi = min(vals), max(vals)
    pad = max(0.01, 0.08 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(10, integer=True))
    ax.set_xlabel("sampling step")
    ax.set_ylabel("σ̂/σ (estimated / scheduled level)")
    if sigmas is not None and len(sigmas):
        top = ax.secondary_xaxis("top")
        ticks = [t for t in MaxNLocator(6, integer=True).tick_values(0, len(sigmas) - 1) if 0 <= t < len(sigmas)]
        top.set_xticks(ticks, [f"{sigmas[int(t)]:.2g}" for t in ticks])
        top.set_xlabel("scheduled noise level σ")
    ax.set_title(_wrap(title, size[0]))
    fig.legend(loc="outside lower center", ncol=2, fontsize=11)
    return fig


def _tile(images: np.ndarray, cols: int, unit: int, gap: int, unit_gap: int):
    """Compose [N, H, W, 3] images into one array: ``unit`` consecutive images side by side form a unit, units
    are separated by ``unit_gap`` white pixels (members by ``gap``); returns the array and each unit's box."""
    n, h, w, _ = images.shape
    rows = math.ceil(n / cols)
    xs, x = [], 0
    for c in range(cols):
        xs.append(x)
        x += w + (unit_gap if unit > 1 and (c + 1) % unit == 0 else gap)
    width = x - (unit_gap if unit > 1 and cols % unit == 0 else gap)
    height = rows * h + (rows - 1) * unit_gap
    out = np.ones((height, width, 3), np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        y0 = r * (h + unit_gap)
        out[y0: y0 + h, xs[c]: xs[c] + w] = images[i]
    boxes = []
    if unit > 1:
        for u in range(math.ceil(n / unit)):
            first, last = u * unit, min(n, (u + 1) * unit) - 1
            r0, c0 = divmod(first, cols)
            _, c1 = divmod(last, cols)
            y0 = r0 * (h + unit_gap)
            boxes.append((xs[c0], y0, xs[c1] + w - xs[c0], h))
    return out, boxes


def _gaps(h: int, unit: int, labelled: bool) -> tuple[int, int]:
    """White pixels between the members of a unit and between units (more when a label goes under each unit)."""
    gap = max(1, h // 16)
    unit_gap = max(3, h // 3) if unit > 1 else gap
    return gap, max(unit_gap, int(h * 0.7)) if labelled else unit_gap


def _draw_grid(ax, images, cols: int, unit: int = 1, unit_labels: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None, frame_color: str = PALETTE[0]) -> None:
    from matplotlib.patches import Rectangle

    arr = np.asarray(images, dtype=np.float32).clip(0, 1)
    h = arr.shape[1]
    gap, unit_gap = _gaps(h, unit, unit_labels is not None)
    tiled, boxes = _tile(arr, cols, unit, gap, unit_gap)
    ax.imshow(tiled, interpolation="nearest")
    for k, (x0, y0, bw, bh) in enumerate(boxes):
        ax.add_patch(Rectangle((x0 - 1.0, y0 - 1.0), bw + 1.0, bh + 1.0, fill=False, edgecolor=frame_color,
                               linewidth=1.6))
        if unit_labels is not None and k < len(unit_labels):
            ax.text(x0 + bw / 2, y0 + bh + 1.5, unit_labels[k], ha="center", va="top", fontsize=11)
    if row_labels is not None:
        for r, text in enumerate(row_labels):
            ax.text(-2, r * (h + unit_gap) + h / 2, text, ha="right", va="center", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_xlim(-1.5 if row_labels is None else -h * 3.2, tiled.shape[1] + 1.5)
    ax.set_ylim(tiled.shape[0] + (h * 0.6 if unit_labels is not None else 0.5), -1.5)


@_styled
def image_grid(images, cols: int, title: str = "", unit: int = 1, unit_labels: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None, caption: str = "", size: tuple[int, int] | None = None):
    """IMAGE [N, H, W, 3] 0..1 as a grid; every ``unit`` consecutive images (a pair, group or replicate) are
    framed together, optionally with a label under each unit and a label left of each row."""
    arr = np.asarray(images, dtype=np.float32)
    n, h, w, _ = arr.shape
    if size is None:
        tiled, _ = _tile(np.zeros((n, h, w, 3), np.float32), cols, unit, *_gaps(h, unit, unit_labels is not None))
        width = max(420, int(cols * 64 + (160 if row_labels else 40)))
        axes_w = width - (150 if row_labels else 30)
        size = (width, int(axes_w * tiled.shape[0] / tiled.shape[1]) + 60 + (40 if caption else 0)
                + (int(title.count("\n") + len(title) > 50) * 22))
    fig = _figure(size)
    ax = fig.subplots()
    _draw_grid(ax, arr, cols, unit, unit_labels, row_labels)
    ax.set_title(_wrap(title, size[0]))
    if caption:
        ax.set_xlabel(caption)
    return fig


@_styled
def image_grids(panels: Sequence[dict], title: str = "", size: tuple[int, int] | None = None):
    """Several image grids side by side, each ``{"images", "cols", "unit", "title", "unit_labels",
    "row_labels"}`` (see :func:`image_grid`), under one title."""
    if size is None:
        cols = sum(p["cols"] for p in panels)
        rows = max(math.ceil(len(p["images"]) / p["cols"]) for p in panels)
        size = (max(560, cols * 78 + 60 * len(panels)), rows * 92 + 110)
    fig = _figure(size)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, p in zip(axes, panels, strict=True):
        _draw_grid(ax, p["images"], p["cols"], p.get("unit", 1), p.get("unit_labels"), p.get("row_labels"))
        ax.set_title(_wrap(p.get("title", ""), size[0] / len(panels)))
    if title:
        fig.suptitle(_wrap(title, size[0], 15), fontsize=15)
    return fig


@_styled
def pair_scatter(correlation, dissimilarity, ref_correlation=None, ref_dissimilarity=None, title: str = "",
                 xlabel: str = "centered correlation of a pair (0 = unrelated)",
                 ylabel: str = "1 − SSIM (1 = unrelated)", size: tuple[int, int] = (560, 480)):
    """One dot per pair: how correlated (x) and how dissimilar (y) its two images are; the batch in blue, a
    reference batch in grey, each batch's mean as a large marker. Pairs whose images differ more sit top left
    (lower correlation, higher 1 − SSIM; 1 − SSIM can reach 2 for opposite images)."""
    fig = _figure(size)
    ax = fig.subplots()
    ax.axvline(0, color="#777777", linewidth=1, linestyle=":")
    ax.axhline(1, color="#777777", linewidth=1, linestyle=":")
    groups = [("batch", correlation, dissimilarity, PALETTE[0], "o")]
    if ref_correlation is not None and ref_dissimilarity is not None:
        groups.insert(0, ("reference", ref_correlation, ref_dissimilarity, "#8a8a8a", "s"))
    for label, x, y, color, marker in groups:
        x, y = np.asarray(x, float), np.asarray(y, float)
        ax.scatter(x, y, s=30 if len(x) <= 64 else 10, color=color, alpha=0.7, marker=marker,
                   label=f"{label}: pairs")
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            ax.scatter([float(x[ok].mean())], [float(y[ok].mean())], s=200, color=color, marker=marker,
                       edgecolor="black", linewidth=1.4, zorder=5, label=f"{label}: mean")
    ax.set_xlim(-1.05, 1.05)
    ys = np.concatenate([_finite(g[2]) for g in groups] + [np.array([0.0, 1.2])])
    ax.set_ylim(0, max(1.2, float(ys.max()) * 1.08))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title, size[0]))
    ax.legend(loc="best", fontsize=11, markerscale=0.7, handletextpad=0.3)
    return fig

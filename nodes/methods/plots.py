"""Small PIL plotting helpers (no matplotlib): heatmap, bar chart, line plot, points-with-interval plot.

Each helper returns a ``PIL.Image`` (RGB); :func:`to_image_tensor` turns one or more of them into a ComfyUI IMAGE
tensor [1, H, W, 3] float 0..1 (several panels are placed side by side). Reusable by any node of the pack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["bar_chart", "diverging_color", "heatmap", "hstack", "interval_plot", "line_plot", "to_image_tensor", "vstack"]

BG = (255, 255, 255)
FG = (30, 30, 30)
GRID = (225, 225, 225)
PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _text(draw: ImageDraw.ImageDraw, xy, text: str, size: int = 12, fill=FG, anchor: str = "la") -> None:
    try:
        draw.text(xy, text, fill=fill, font=_font(size), anchor=anchor)
    except (ValueError, TypeError):  # bitmap fonts do not support anchors
        draw.text(xy, text, fill=fill, font=_font(size))


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "nan"
    a = abs(v)
    if a != 0 and (a < 1e-2 or a >= 1e4):
        return f"{v:.2e}"
    return f"{v:.3g}"


def diverging_color(v: float, vmin: float = -1.0, vmax: float = 1.0) -> tuple[int, int, int]:
    """Blue (vmin) - white (midpoint) - red (vmax); grey for NaN."""
    if not math.isfinite(v):
        return (160, 160, 160)
    mid = (vmin + vmax) / 2
    half = (vmax - vmin) / 2 or 1.0
    t = max(-1.0, min(1.0, (v - mid) / half))
    lo, hi = (59, 76, 192), (180, 4, 38)
    end = hi if t > 0 else lo
    a = abs(t)
    return tuple(int(round(255 * (1 - a) + e * a)) for e in end)


def heatmap(
    matrix,
    title: str = "",
    vmin: float = -1.0,
    vmax: float = 1.0,
    marks: Sequence[tuple[int, int]] | None = None,
    size: int = 320,
) -> Image.Image:
    """Square heatmap of an [N, N] matrix with a colour bar; ``marks`` outlines chosen cells (e.g. the pairs)."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    top, left, bar_w = 28, 30, 46
    cell = max(1, size // max(n, 1))
    side = cell * n
    img = Image.new("RGB", (left + side + bar_w + 10, top + side + 24), BG)
    d = ImageDraw.Draw(img)
    _text(d, (left, 6), title, 13)
    for r in range(n):
        for c in range(n):
            x0, y0 = left + c * cell, top + r * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=diverging_color(m[r, c], vmin, vmax))
    if marks is not None and cell >= 3:
        for r, c in marks:
            for rr, cc in ((r, c), (c, r)):
                x0, y0 = left + cc * cell, top + rr * cell
                d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], outline=FG)
    step = max(1, n // 8)
    for k in range(0, n, step):
        _text(d, (left - 4, top + k * cell + cell // 2), str(k), 10, anchor="rm")
        _text(d, (left + k * cell + cell // 2, top + side + 4), str(k), 10, anchor="ma")
    # colour bar
    bx = left + side + 10
    for y in range(side):
        v = vmax - (vmax - vmin) * y / max(side - 1, 1)
        d.line([bx, top + y, bx + 10, top + y], fill=diverging_color(v, vmin, vmax))
    _text(d, (bx + 13, top), _fmt(vmax), 10)
    _text(d, (bx + 13, top + side // 2), _fmt((vmin + vmax) / 2), 10, anchor="lm")
    _text(d, (bx + 13, top + side), _fmt(vmin), 10, anchor="lb")
    return img


def _axes(d: ImageDraw.ImageDraw, box, lo: float, hi: float, ticks: int = 4) -> None:
    x0, y0, x1, y1 = box
    step = (hi - lo) / ticks
    # enough decimals to tell neighbouring ticks apart
    decimals = max(0, min(8, 1 - math.floor(math.log10(step)))) if step > 0 else 3
    big = max(abs(lo), abs(hi)) >= 1e4
    for k in range(ticks + 1):
        v = lo + step * k
        y = y1 - (y1 - y0) * k / ticks
        d.line([x0, y, x1, y], fill=GRID)
        _text(d, (x0 - 4, y), f"{v:.2e}" if big else f"{v:.{decimals}f}", 10, anchor="rm")
    d.line([x0, y0, x0, y1], fill=FG)
    d.line([x0, y1, x1, y1], fill=FG)


def _range(values: np.ndarray, lo: float | None, hi: float | None) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    a = float(v.min()) if lo is None and v.size else (lo if lo is not None else 0.0)
    b = float(v.max()) if hi is None and v.size else (hi if hi is not None else 1.0)
    if lo is None and a > 0:
        a = 0.0
    if hi is None and b < 0:
        b = 0.0
    if b - a < 1e-12:
        a, b = a - 0.5, b + 0.5
    return a, b


def bar_chart(
    values,
    title: str = "",
    labels: Sequence[str] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    color=PALETTE[0],
    reference: float | None = None,
    size: tuple[int, int] = (360, 200),
) -> Image.Image:
    """Vertical bars from 0 (signed values go below the zero line); optional dashed ``reference`` level."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    w, h = size
    img = Image.new("RGB", (w, h), BG)
    d = ImageDraw.Draw(img)
    _text(d, (8, 5), title, 13)
    box = (44, 26, w - 8, h - 22)
    lo, hi = _range(v, vmin, vmax)
    _axes(d, box, lo, hi)
    x0, y0, x1, y1 = box

    def ymap(val):
        return y1 - (y1 - y0) * (min(max(val, lo), hi) - lo) / (hi - lo)

    n = max(len(v), 1)
    slot = (x1 - x0 - 2) / n
    zero = ymap(0.0)
    for k, val in enumerate(v):
        if not math.isfinite(val):
            continue
        bx0 = x0 + 2 + k * slot + slot * 0.15
        bx1 = x0 + 2 + (k + 1) * slot - slot * 0.15
        ya, yb = sorted((zero, ymap(val)))
        d.rectangle([bx0, ya, max(bx0, bx1), max(ya, yb)], fill=color)
    if reference is not None and math.isfinite(reference):
        yr = ymap(reference)
        for xs in range(int(x0), int(x1), 8):
            d.line([xs, yr, xs + 4, yr], fill=PALETTE[1], width=2)
    if labels is not None:
        step = max(1, len(labels) // 10)
        for k in range(0, len(labels), step):
            _text(d, (x0 + 2 + (k + 0.5) * slot, y1 + 4), str(labels[k]), 9, anchor="ma")
    return img


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "",
    xlabel: str = "",
    size: tuple[int, int] = (360, 220),
    logy: bool = False,
) -> Image.Image:
    """Lines with dots; ``series`` maps a legend label to (xs, ys)."""
    w, h = size
    img = Image.new("RGB", (w, h), BG)
    d = ImageDraw.Draw(img)
    _text(d, (8, 5), title + (" (y axis: log10)" if logy else ""), 13)
    box = (50, 26, w - 10, h - 30)
    xs_all = np.concatenate([np.asarray(x, float) for x, _ in series.values()]) if series else np.zeros(1)
    ys_all = np.concatenate([np.asarray(y, float) for _, y in series.values()]) if series else np.zeros(1)
    tr = (lambda y: np.log10(np.maximum(y, 1e-300))) if logy else (lambda y: np.asarray(y, float))
    lo, hi = _range(tr(ys_all), None, None)
    xlo, xhi = float(np.nanmin(xs_all)), float(np.nanmax(xs_all))
    if xhi - xlo < 1e-12:
        xlo, xhi = xlo - 0.5, xhi + 0.5
    _axes(d, box, lo, hi)
    x0, y0, x1, y1 = box
    _text(d, ((x0 + x1) / 2, h - 12), xlabel, 10, anchor="ma")
    _text(d, (x0, y1 + 4), _fmt(xlo), 10)
    _text(d, (x1, y1 + 4), _fmt(xhi), 10, anchor="ra")
    for k, (label, (xs, ys)) in enumerate(series.items()):
        col = PALETTE[k % len(PALETTE)]
        pts = [
            (x0 + (x1 - x0) * (float(x) - xlo) / (xhi - xlo), y1 - (y1 - y0) * (float(tr(y)) - lo) / (hi - lo))
            for x, y in zip(xs, ys, strict=False)
            if math.isfinite(float(y))
        ]
        if len(pts) > 1:
            d.line(pts, fill=col, width=2)
        for px, py in pts:
            d.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=col)
        _text(d, (x0 + 8, y0 + 4 + 14 * k), label, 10, fill=col)
    return img


def interval_plot(
    item_x,
    item_y,
    unit_x,
    unit_y,
    estimate: float,
    low: float,
    high: float,
    title: str = "",
    naive: tuple[float, float] | None = None,
    size: tuple[int, int] = (380, 220),
) -> Image.Image:
    """Per-image values (grey), unit means (blue), the estimate (line) and its interval (band);
    ``naive`` draws an iid-style interval (red dashes) for comparison."""
    w, h = size
    img = Image.new("RGB", (w, h), BG)
    d = ImageDraw.Draw(img)
    _text(d, (8, 5), title, 13)
    box = (56, 26, w - 10, h - 22)
    vals = np.concatenate([np.asarray(item_y, float), np.asarray(unit_y, float), [low, high]])
    if naive is not None:
        vals = np.concatenate([vals, naive])
    lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
    pad = (hi - lo) * 0.08 or 0.5
    lo, hi = lo - pad, hi + pad
    _axes(d, box, lo, hi)
    x0, y0, x1, y1 = box
    xmax = max(float(np.max(item_x)) if len(item_x) else 1.0, 1.0)

    def px(x):
        return x0 + 8 + (x1 - x0 - 16) * float(x) / xmax

    def py(y):
        return y1 - (y1 - y0) * (float(y) - lo) / (hi - lo)

    d.rectangle([x0 + 1, py(high), x1, py(low)], fill=(205, 225, 245))
    d.line([x0 + 1, py(estimate), x1, py(estimate)], fill=PALETTE[0], width=2)
    if naive is not None:
        for yv in naive:
            for xs in range(int(x0), int(x1), 8):
                d.line([xs, py(yv), xs + 4, py(yv)], fill=PALETTE[1], width=1)
    for x, y in zip(item_x, item_y, strict=False):
        d.ellipse([px(x) - 2, py(y) - 2, px(x) + 2, py(y) + 2], fill=(150, 150, 150))
    for x, y in zip(unit_x, unit_y, strict=False):
        d.ellipse([px(x) - 3.5, py(y) - 3.5, px(x) + 3.5, py(y) + 3.5], fill=PALETTE[0])
    return img


def hstack(panels: Sequence[Image.Image], gap: int = 8) -> Image.Image:
    w = sum(p.width for p in panels) + gap * (len(panels) - 1)
    h = max(p.height for p in panels)
    out = Image.new("RGB", (w, h), BG)
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def vstack(panels: Sequence[Image.Image], gap: int = 6) -> Image.Image:
    w = max(p.width for p in panels)
    h = sum(p.height for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (w, h), BG)
    y = 0
    for p in panels:
        out.paste(p, (0, y))
        y += p.height + gap
    return out


def to_image_tensor(panels: Image.Image | Sequence[Image.Image]):
    """PIL image(s) -> ComfyUI IMAGE tensor [1, H, W, 3] float32 0..1 (several panels side by side)."""
    import torch

    if not isinstance(panels, Image.Image):
        panels = hstack(list(panels))
    arr = np.asarray(panels.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).unsqueeze(0)

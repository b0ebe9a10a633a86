"""The plots of the nodes and the demo (nodes/methods/plots.py): matplotlib figures with a title, labelled axes,
legends and reference lines, turned into ComfyUI IMAGE tensors of the usual shape and dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.methods import plots

pytest.importorskip("matplotlib")


def _ax(fig):
    return fig.axes[0]


def _legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def _hlines(ax) -> list[float]:
    """y of every horizontal line drawn across the axes (axhline)."""
    out = []
    for line in ax.get_lines():
        x, y = line.get_xdata(), line.get_ydata()
        if len(y) == 2 and y[0] == y[1] and list(x) == [0, 1]:
            out.append(float(y[0]))
    return out


def test_every_plot_has_a_title_and_labelled_axes():
    figs = [
        plots.pair_scatter([0.2, -0.5, 0.1], [0.8, 1.4, 0.9], title="pairs"),
        plots.image_grid(torch.rand(4, 8, 8, 3), 4, "grid", unit=2, caption="pairs framed"),
        plots.line_plot({"a": ([0, 1, 2], [0.1, 0.2, 0.4])}, "lines", xlabel="step", ylabel="value"),
        plots.interval_plot([0, 1, 2, 3], [0.1, 0.3, 0.2, 0.25], [0, 1], [0.2, 0.225], 0.21, 0.18, 0.24,
                            title="interval", naive=(0.1, 0.3), ylabel="brightness", xlabel="pair"),
        plots.forest_plot([("iid", 0.3, 0.2, 0.4), ("pairs", 0.31, 0.28, 0.34)], "forest", xlabel="brightness",
                          reference=0.3),
        plots.noise_shift_plot({"run": {"step": [0, 1, 2], "ratio": [1.0, 1.02, 1.1]}}, "shift", band_steps=[1]),
    ]
    for fig in figs:
        ax = _ax(fig)
        assert ax.get_title(), fig
        assert ax.get_xlabel(), ax.get_title()
        if fig is figs[1]:
            continue  # a picture grid: a caption under it, no y axis
        # the y axis is labelled, or (forest plot) every row is
        assert ax.get_ylabel() or all(t.get_text() for t in ax.get_yticklabels()), ax.get_title()
    assert [t.get_text() for t in _ax(figs[4]).get_yticklabels()] == ["iid", "pairs"]


def test_reference_lines_and_legends():
    ip = plots.interval_plot([0, 1], [0.1, 0.2], [0], [0.15], 0.15, 0.12, 0.18, naive=(0.05, 0.25), ylabel="v")
    assert {0.15, 0.05, 0.25} <= set(_hlines(_ax(ip)))
    texts = _legend_texts(ip)
    assert any("95 % interval [" in t for t in texts) and any("iid images at the same N" in t for t in texts)

    fp = plots.forest_plot([("a", 1.0, 0.9, 1.1)], "f", xlabel="x", reference=1.02, reference_band=(1.0, 1.04),
                           notes=["1.00× iid width"])
    ref_lines = [ln for ln in _ax(fp).get_lines() if list(ln.get_xdata()) == [1.02, 1.02]]
    assert ref_lines, "the reference value is drawn as a vertical line"
    assert any("1.02" in t for t in _legend_texts(fp))
    assert [t.get_text() for t in fp.axes[1].get_yticklabels()] == ["1.00× iid width"]


def test_noise_shift_plot_shows_one_band_and_a_range_that_makes_small_shifts_visible():
    curve = {"step": list(range(6)), "ratio": [1.0, 0.99, 0.98, 1.01, 1.2, 1.3],
             "low": [0.97, 0.96, 0.95, 0.98, 1.15, 1.25], "high": [1.03, 1.02, 1.01, 1.04, 1.25, 1.35],
             "corrected": [False, False, True, False, False, False]}
    fig = plots.noise_shift_plot({"batch": curve}, "Does the sampler drift?", band_steps=[1, 2, 3],
                                 band_label="guidance band (σ 0.1–2)", sigmas=[10, 5, 2, 1, 0.5, 0.1])
    ax = _ax(fig)
    lo, hi = ax.get_ylim()
    assert 0.9 < lo < 0.95 and 1.35 < hi < 1.5  # follows the data; never squashed down to 0
    assert 1.0 in _hlines(ax)
    texts = _legend_texts(fig)
    assert "guidance band (σ 0.1–2)" in texts and "σ̂/σ = 1: no noise shift" in texts
    assert "corrected by the guidance" in texts and any("per-image range" in t for t in texts)
    band = [p for p in ax.patches if p.get_label() == "guidance band (σ 0.1–2)"]
    assert len(band) == 1, "the guidance band is shaded once"
    x0, x1 = band[0].get_x(), band[0].get_x() + band[0].get_width()
    assert (x0, x1) == (pytest.approx(0.5), pytest.approx(3.5))
    assert fig.axes[0].child_axes, "a second x axis labels the scheduled sigma"


def test_pair_scatter_shows_each_pair_and_each_batch_mean():
    fig = plots.pair_scatter([-0.8, -0.6], [1.5, 1.4], [0.1, -0.1], [0.8, 1.0], "Are the pairs more different?")
    ax = _ax(fig)
    assert ax.get_title() and ax.get_xlabel().startswith("centered correlation") and "SSIM" in ax.get_ylabel()
    texts = _legend_texts(fig)
    assert texts == ["reference: pairs", "reference: mean", "batch: pairs", "batch: mean"]
    means = [c.get_offsets()[0].tolist() for c in ax.collections if len(c.get_offsets()) == 1]
    assert means == [pytest.approx([0.0, 0.9]), pytest.approx([-0.7, 1.45])]
    assert ax.get_ylim()[1] >= 1.5 and ax.get_xlim() == (-1.05, 1.05)
    alone = plots.pair_scatter([0.1], [0.5], title="x")
    assert _legend_texts(alone) == ["batch: pairs", "batch: mean"]


def test_image_grid_frames_every_unit_and_labels_rows():
    imgs = torch.rand(16, 8, 8, 3, generator=torch.Generator().manual_seed(0))
    fig = plots.image_grid(imgs, 8, "RQMC", unit=8, row_labels=["replicate 1", "replicate 2"], caption="rows")
    ax = _ax(fig)
    frames = [p for p in ax.patches if not p.get_fill()]
    assert len(frames) == 2
    assert {t.get_text() for t in ax.texts} == {"replicate 1", "replicate 2"}
    pairs = plots.image_grids([{"images": imgs, "cols": 4, "unit": 2, "title": "a",
                                "unit_labels": [f"r = {i}" for i in range(8)]}], "Are the two images different?")
    assert len([p for p in pairs.axes[0].patches if not p.get_fill()]) == 8
    assert "Are the two images different?" in pairs.get_suptitle()


def test_node_plot_tensors_have_the_image_shape_and_dtype():
    fig = plots.line_plot({"a": ([0, 1], [0, 1])}, "x", xlabel="x", ylabel="y", size=(300, 260))
    arr = plots.render(fig)
    assert arr.dtype == np.uint8 and arr.shape == (260, 300, 3)
    t = plots.to_image_tensor(fig)
    assert t.shape == (1, 260, 300, 3) and t.dtype == torch.float32
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0 and float(t.std()) > 0.05
    small = plots.pair_scatter([0.1], [0.5], title="b", size=(200, 200))
    both = plots.to_image_tensor([fig, small])
    assert both.shape == (1, 260, 300 + 8 + 200, 3)  # side by side, top-aligned, 8 px apart
    stacked = plots.to_image_tensor(plots.vstack([fig, small]))
    assert stacked.shape == (1, 260 + 6 + 200, 300, 3)

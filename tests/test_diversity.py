"""Pair diversity metrics (nodes/methods/diversity.py): exact values, SSIM vs independent references, chunking,
pairings, bad input. Plots (nodes/methods/plots.py) render."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.methods import diversity as dv
from antithetic_sampling.nodes.methods import plots
from scipy import ndimage


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- exact values


def test_identical_images():
    img = _rand(1, 24, 20, 3)
    res = dv.pair_diversity(img.repeat(4, 1, 1, 1), "all pairs")
    assert len(res.pairs) == 6
    np.testing.assert_allclose(res.correlation, 1.0, atol=1e-9)
    np.testing.assert_allclose(res.ssim, 1.0, atol=1e-6)
    np.testing.assert_allclose(res.rmse, 0.0, atol=1e-6)
    assert res.vendi == pytest.approx(1.0, abs=1e-9)
    h = res.headline()
    assert h["one_minus_ssim"] == pytest.approx(0.0, abs=1e-6)


def test_reflections_around_the_mean_have_centered_correlation_minus_one():
    m = 0.5 * torch.ones(1, 16, 16, 3)
    d = (_rand(2, 16, 16, 3, seed=1) - 0.5) * 0.4
    batch = torch.cat([m + d[:1], m - d[:1], m + d[1:], m - d[1:]])  # interleaved pairs, batch mean = m
    res = dv.pair_diversity(batch, "interleaved")
    np.testing.assert_allclose(res.centered_correlation, -1.0, atol=1e-9)
    # halves layout of the same pairs
    halves = torch.cat([m + d[:1], m + d[1:], m - d[:1], m - d[1:]])
    np.testing.assert_allclose(dv.pair_diversity(halves, "halves").centered_correlation, -1.0, atol=1e-9)
    # with a constant mean, the standard correlation is -1 too
    np.testing.assert_allclose(res.correlation, -1.0, atol=1e-9)


def test_reference_mean_is_used_as_centre():
    m = _rand(1, 16, 16, 3, seed=2) * 0.5 + 0.25
    d = (_rand(1, 16, 16, 3, seed=3) - 0.5) * 0.3
    pair = torch.cat([m + d + 0.05, m - d + 0.05])  # reflections around m + 0.05, not around m
    res = dv.pair_diversity(pair, center=m[0])
    x, y = (pair - m).reshape(2, -1).double().numpy()
    assert res.centered_correlation[0] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
    assert res.center == "reference mean"
    assert dv.pair_diversity(pair).centered_correlation[0] == pytest.approx(-1.0, abs=1e-9)


def test_vendi_of_orthogonal_embeddings_is_n():
    n = 6
    imgs = _rand(n, 12, 12, 3)
    res = dv.pair_diversity(imgs, "all pairs", embeddings=torch.eye(n) * 3.0)
    assert res.vendi == pytest.approx(n, rel=1e-9)
    assert res.vendi_features == "CLIP embeddings"
    np.testing.assert_allclose(res.clip_distance, 1.0, atol=1e-12)
    assert dv.vendi_score(torch.ones(5, 7)) == pytest.approx(1.0)
    assert dv.vendi_score(torch.eye(4)) == pytest.approx(4.0)


def test_vendi_on_pixels_of_disjoint_images_is_n():
    imgs = torch.zeros(4, 16, 16, 3)
    imgs[0, :8, :8] = 1.0
    imgs[1, :8, 8:] = 0.7
    imgs[2, 8:, :8] = 0.4
    imgs[3, 8:, 8:] = 0.9
    res = dv.pair_diversity(imgs, "interleaved", vendi_size=8)  # 2x2 area pooling keeps the quadrants disjoint
    assert res.vendi == pytest.approx(4.0, rel=1e-9)
    assert res.vendi_features == "pixels 8x8"


def test_pearson_and_rmse_match_numpy():
    imgs = _rand(6, 20, 18, 3, seed=4)
    res = dv.pair_diversity(imgs, "all pairs")
    flat = imgs.reshape(6, -1).double().numpy()
    c = np.corrcoef(flat)
    for k, (i, j) in enumerate(res.pairs):
        assert res.correlation[k] == pytest.approx(c[i, j], abs=1e-9)
        assert res.rmse[k] == pytest.approx(np.sqrt(np.mean((flat[i] - flat[j]) ** 2)), abs=1e-7)
    cm = np.corrcoef(flat - flat.mean(0))
    np.testing.assert_allclose(res.centered_matrix, cm, atol=1e-9)
    np.testing.assert_allclose(res.similarity_matrix, c, atol=1e-9)


def test_chunking_gives_the_same_numbers():
    imgs = _rand(8, 40, 36, 3, seed=5)
    big = dv.pair_diversity(imgs, "all pairs", memory_budget_mb=256)
    small = dv.pair_diversity(imgs, "all pairs", memory_budget_mb=0.05)  # many pixel chunks, one-image SSIM blocks
    for name in ("correlation", "centered_correlation", "rmse"):
        np.testing.assert_allclose(getattr(small, name), getattr(big, name), atol=1e-10)
    np.testing.assert_allclose(small.ssim, big.ssim, atol=1e-6)
    assert small.vendi == pytest.approx(big.vendi, rel=1e-9)


def test_progress_callback_counts_every_pair():
    calls = []
    dv.pair_diversity(_rand(6, 16, 16, 3), "all pairs", memory_budget_mb=0.05, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (15, 15)
    assert all(b >= a for (a, _), (b, _) in zip(calls, calls[1:], strict=False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    imgs = _rand(8, 64, 48, 3, seed=6)
    a = dv.pair_diversity(imgs, "all pairs", device="cpu")
    b = dv.pair_diversity(imgs, "all pairs", device="cuda")
    for name in ("correlation", "centered_correlation", "rmse"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), atol=1e-9)
    np.testing.assert_allclose(b.ssim, a.ssim, atol=1e-5)
    assert b.vendi == pytest.approx(a.vendi, rel=1e-6)


# ---------------------------------------------------------------- SSIM against independent references


def _ssim_scipy(a: np.ndarray, b: np.ndarray, win: int = 11, sigma: float = 1.5) -> float:
    """Straight numpy/scipy SSIM (Wang et al. 2004) on 2-D float64 arrays, valid region."""
    r = win // 2
    x = np.arange(win) - r
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()

    def f(z):
        return ndimage.correlate1d(ndimage.correlate1d(z, g, axis=0), g, axis=1)[r:-r, r:-r]

    c1, c2 = 0.01**2, 0.03**2
    mx, my = f(a), f(b)
    vx, vy, cxy = f(a * a) - mx**2, f(b * b) - my**2, f(a * b) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _pairs_for_ssim():
    a = _rand(3, 48, 40, 3, seed=7)
    b = (0.6 * a + 0.4 * _rand(3, 48, 40, 3, seed=8)).clamp(0, 1)
    b[2] = a[2].flip(0)  # a structurally different pair
    return a, b


def test_ssim_matches_scipy_reference():
    a, b = _pairs_for_ssim()
    ours_lum = dv.ssim(a, b, "luminance")
    ours_rgb = dv.ssim(a, b, "per-channel")
    w = np.array([0.299, 0.587, 0.114])
    for k in range(3):
        an, bn = a[k].double().numpy(), b[k].double().numpy()
        assert ours_lum[k] == pytest.approx(_ssim_scipy(an @ w, bn @ w), abs=2e-5)
        per = np.mean([_ssim_scipy(an[..., c], bn[..., c]) for c in range(3)])
        assert ours_rgb[k] == pytest.approx(per, abs=2e-5)


def test_ssim_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    a, b = _pairs_for_ssim()
    ours = dv.ssim(a, b, "per-channel")
    for k in range(3):
        ref = skm.structural_similarity(
            a[k].double().numpy(), b[k].double().numpy(), data_range=1.0, channel_axis=-1,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        assert ours[k] == pytest.approx(ref, abs=2e-5)


def test_pair_diversity_ssim_equals_direct_ssim():
    imgs = _rand(6, 30, 30, 3, seed=9)
    res = dv.pair_diversity(imgs, "groups of K", 3)
    direct = dv.ssim(imgs[res.pairs[:, 0]], imgs[res.pairs[:, 1]])
    np.testing.assert_allclose(res.ssim, direct.numpy(), atol=1e-6)


def test_small_images_shrink_the_window():
    res = dv.pair_diversity(_rand(2, 8, 9, 3), "interleaved")
    assert res.ssim_window == 7
    assert any("window" in n for n in res.notes)


# ---------------------------------------------------------------- pairings


def test_pair_indices():
    assert dv.pair_indices(6, "interleaved").tolist() == [[0, 1], [2, 3], [4, 5]]
    assert dv.pair_indices(6, "halves").tolist() == [[0, 3], [1, 4], [2, 5]]
    assert dv.pair_indices(6, "groups of K", 3).tolist() == [[0, 1], [0, 2], [1, 2], [3, 4], [3, 5], [4, 5]]
    assert len(dv.pair_indices(7, "all pairs")) == 21


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("n", "pairing", "k", "match"),
    [
        (1, "interleaved", 2, "at least 2 images"),
        (1, "all pairs", 2, "at least 2 images"),
        (5, "interleaved", 2, "even batch"),
        (5, "halves", 2, "even batch"),
        (6, "groups of K", 4, "groups of K=4"),
        (6, "groups of K", 1, "group_size"),
        (4, "diagonal", 2, "pairing"),
    ],
)
def test_bad_batch_and_pairing(n, pairing, k, match):
    with pytest.raises(ValueError, match=match):
        dv.pair_diversity(_rand(n, 8, 8, 3), pairing, k)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_pixels(bad):
    imgs = _rand(4, 8, 8, 3)
    imgs[2, 3, 4, 1] = bad
    with pytest.raises(ValueError, match=r"images: contains 1 NaN/inf"):
        dv.pair_diversity(imgs)
    with pytest.raises(ValueError, match=r"reference: contains 1 NaN/inf"):
        dv.validate_reference(_rand(4, 8, 8, 3), imgs, "interleaved", 2)


def test_bad_reference():
    imgs = _rand(4, 16, 16, 3)
    with pytest.raises(ValueError, match=r"reference: images are \(16, 16, 3\).*\(16, 12, 3\)"):
        dv.validate_reference(imgs, _rand(4, 16, 12, 3), "interleaved", 2)
    with pytest.raises(ValueError, match="reference: need at least 2"):
        dv.validate_reference(imgs, _rand(1, 16, 16, 3), "interleaved", 2)
    with pytest.raises(ValueError, match="reference: pairing 'interleaved' needs an even batch"):
        dv.validate_reference(imgs, _rand(3, 16, 16, 3), "interleaved", 2)
    with pytest.raises(ValueError, match="reference"):
        dv.pair_diversity(imgs, center=torch.zeros(8, 8, 3))


def test_bad_image_tensor():
    with pytest.raises(ValueError, match=r"images: expected an IMAGE batch"):
        dv.pair_diversity(torch.rand(4, 8, 8))
    with pytest.raises(ValueError, match="images: expected an IMAGE tensor"):
        dv.pair_diversity([[1, 2]])


class _FakeOutput:
    def __init__(self, emb):
        self.image_embeds = emb


class _FakeClipVision:
    """Duck-typed like comfy.clip_vision.ClipVisionModel: encode_image(image) -> object with image_embeds."""

    def encode_image(self, image):
        flat = image.reshape(image.shape[0], -1)
        return _FakeOutput(torch.stack([flat.mean(1), flat.std(1), flat[:, 0]], 1))


def test_clip_embeddings_and_distance():
    imgs = _rand(4, 8, 8, 3)
    emb = dv.clip_image_embeddings(_FakeClipVision(), imgs, batch=3)
    assert emb.shape == (4, 3)
    res = dv.pair_diversity(imgs, embeddings=emb)
    e = emb.double().numpy()
    cos = (e[0] @ e[1]) / np.linalg.norm(e[0]) / np.linalg.norm(e[1])
    assert res.clip_distance[0] == pytest.approx(1 - cos, abs=1e-12)
    assert "clip_distance" in res.headline()


@pytest.mark.parametrize("obj", [object(), "clip", torch.zeros(3)])
def test_wrong_clip_vision(obj):
    with pytest.raises(ValueError, match="clip_vision: expected a CLIP_VISION"):
        dv.clip_image_embeddings(obj, _rand(2, 8, 8, 3))


def test_clip_vision_without_image_embeds():
    class NotClip:
        def encode_image(self, image):
            return {"last_hidden_state": torch.zeros(2, 3)}

    with pytest.raises(ValueError, match="clip_vision: encode_image gave no image_embeds"):
        dv.clip_image_embeddings(NotClip(), _rand(2, 8, 8, 3))
    with pytest.raises(ValueError, match="clip_vision: got 3 embeddings for 4 images"):
        dv.pair_diversity(_rand(4, 8, 8, 3), embeddings=torch.rand(3, 5))


# ---------------------------------------------------------------- plots


def test_plots_render_to_image_tensors():
    res = dv.pair_diversity(_rand(6, 16, 16, 3), "interleaved")
    panels = [
        plots.pair_scatter(res.centered_correlation, 1 - res.ssim, title="pairs"),
        plots.line_plot({"x": ([1, 2, 4], [0.1, 0.2, 0.4])}, "line", logy=True),
        plots.interval_plot([0, 1, 2], [0.1, 0.3, 0.2], [0.5, 1.5], [0.2, 0.25], 0.22, 0.2, 0.24, naive=(0.1, 0.3)),
    ]
    t = plots.to_image_tensor(panels)
    assert t.ndim == 4 and t.shape[0] == 1 and t.shape[-1] == 3
    assert t.dtype == torch.float32 and 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert float(t.std()) > 0.05  # something was drawn


# ---------------------------------------------------------------- bench smoke test


def test_metric_bench_writes_json_markdown_and_readme_block(tmp_path):
    import json

    from antithetic_sampling.nodes.evidence import metric_bench

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- BEGIN:metric-results -->\nSTALE TABLE\n<!-- END:metric-results -->\ntail\n")
    rc = metric_bench.main(["--n", "4", "--size", "24", "--all-pairs", "4", "--repeats", "1", "--out",
                            str(tmp_path / "out"), "--readme", str(readme)])
    assert rc == 0
    data = json.loads((tmp_path / "out" / "metric_bench.json").read_text())
    assert data["pairs_mode"]["pairs"] == 2 and data["all_pairs"][0]["pairs"] == 6
    text = readme.read_text()
    assert "STALE TABLE" not in text and "interleaved pairs" in text and text.endswith("tail\n")
    assert (tmp_path / "out" / "metric_bench.md").read_text().startswith("Pair Diversity Metric")

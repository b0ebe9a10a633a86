"""The evidence models and commands (no ComfyUI): analytic GMM, learned digits denoiser, demo, bench, train.

* The analytic denoiser is checked against a dense, textbook computation and a brute-force Monte-Carlo
  posterior mean; its score against autograd of the exact log-density.
* On the analytic model, antithetic pairs anti-correlate the brightness statistic, and every design's own 95 %
  interval covers the true mean 92-98 % of the time (seeded, >= 200 repetitions).
* The shipped learned model loads (sha256 checked), reproduces its recorded validation loss, and its samples are
  digit-like by a nearest-neighbour criterion; the training command is seeded and deterministic.
* ``demo`` and ``bench`` run end to end on their reduced settings and write what they promise.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.evidence import bench, common, demo, digits, harness
from antithetic_sampling.nodes.evidence.analytic import AnalyticGMM
from antithetic_sampling.nodes.evidence.designs import make_designs


@pytest.fixture(scope="module")
def small_gmm() -> AnalyticGMM:
    # 16 dimensions: small enough for dense d x d algebra and a brute-force posterior by importance sampling.
    return AnalyticGMM(shape=(1, 4, 4), components=3, rank=2, seed=3, iso_std=0.3)


def _dense_log_density(model: AnalyticGMM, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """log p_sigma(x) of the mixture with every covariance formed explicitly (float64), [B]."""
    d = model.dim
    comps = []
    for k in range(model.weights.shape[0]):
        q = model.bases[k]
        cov = q @ torch.diag(model.eigvals[k]) @ q.T + (model.iso_var[k] + sigma**2) * torch.eye(d, dtype=torch.float64)
        mvn = torch.distributions.MultivariateNormal(model.means[k], covariance_matrix=cov)
        comps.append(torch.log(model.weights[k]) + mvn.log_prob(x.reshape(x.shape[0], -1)))
    return torch.logsumexp(torch.stack(comps, 1), dim=1)


def _dense_posterior_mean(model: AnalyticGMM, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x0 | x] = sum_k p(k | x) [mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (x - mu_k)] with dense matrices."""
    d = model.dim
    xf = x.reshape(x.shape[0], -1).double()
    logs, means = [], []
    for k in range(model.weights.shape[0]):
        q = model.bases[k]
        cov0 = q @ torch.diag(model.eigvals[k]) @ q.T + model.iso_var[k] * torch.eye(d, dtype=torch.float64)
        cov = cov0 + sigma**2 * torch.eye(d, dtype=torch.float64)
        mvn = torch.distributions.MultivariateNormal(model.means[k], covariance_matrix=cov)
        logs.append(torch.log(model.weights[k]) + mvn.log_prob(xf))
        gain = cov0 @ torch.linalg.inv(cov)
        means.append(model.means[k] + (xf - model.means[k]) @ gain.T)
    resp = torch.softmax(torch.stack(logs, 1), dim=1)
    return torch.einsum("bk,kbd->bd", resp, torch.stack(means)).reshape(x.shape)


# ----------------------------------------------------------------------------------------------- analytic model


@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0, 30.0])
def test_analytic_denoiser_equals_dense_posterior_mean(small_gmm, sigma):
    gen = torch.Generator().manual_seed(1)
    x = small_gmm.sample(32, gen).double() + sigma * torch.randn((32, *small_gmm.shape), generator=gen, dtype=torch.float64)
    got = small_gmm.denoise(x, sigma)
    want = _dense_posterior_mean(small_gmm, x, sigma)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sigma", [0.2, 2.0])
def test_analytic_score_is_the_gradient_of_the_exact_log_density(small_gmm, sigma):
    gen = torch.Generator().manual_seed(2)
    x = (small_gmm.sample(8, gen).double() + sigma * torch.randn((8, *small_gmm.shape), generator=gen,
                                                                 dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(_dense_log_density(small_gmm, x, sigma).sum(), x)
    assert torch.allclose(small_gmm.score(x.detach(), sigma), grad, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_analytic_denoiser_matches_brute_force_monte_carlo_posterior_mean(small_gmm, sigma):
    """Self-normalised importance sampling from the prior: E[x0|x] ~ sum_i w_i x0_i, w_i ~ N(x; x0_i, sigma^2 I)."""
    gen = torch.Generator().manual_seed(3)
    prior = small_gmm.sample(400_000, gen).double().reshape(400_000, -1)
    x = small_gmm.sample(4, gen).double() + sigma * torch.randn((4, *small_gmm.shape), generator=gen,
                                                                dtype=torch.float64)
    exact = small_gmm.denoise(x, sigma).reshape(4, -1)
    for i in range(4):
        logw = -((prior - x[i].reshape(1, -1)) ** 2).sum(1) / (2 * sigma**2)
        w = torch.softmax(logw, 0)
        ess = float(1.0 / (w**2).sum())
        assert ess > 2000, f"importance sampler degenerate (ESS {ess:.0f}): the check would be meaningless"
        mc = (w[:, None] * prior).sum(0)
        # Monte-Carlo standard error of a self-normalised estimate, per coordinate.
        se = ((w[:, None] ** 2) * (prior - mc) ** 2).sum(0).sqrt()
        assert torch.all((mc - exact[i]).abs() <= 5 * se + 1e-6), float(((mc - exact[i]).abs() / se).max())


def test_analytic_antithetic_pairs_anticorrelate_brightness():
    model = common.load_model("analytic")
    ds = {d.name: d for d in make_designs(model.shape)}
    n = 512
    for name, lo, hi in (("antithetic", -1.0, -0.6), ("iid", -0.2, 0.2)):
        x0 = common.generate(model, ds[name], n, seed=0, steps=10, sampler="dpmpp_2m")
        rho = common.stat_correlation(common.statistics(model, x0)["brightness"], common.unit_pairs(n, 2))
        assert lo < rho < hi, (name, rho)


@pytest.mark.slow
def test_every_design_interval_covers_the_true_mean_92_to_98_percent():
    """Seeded: 800 repetitions of N = 32 images per design (4 RQMC replicates of 8), the design's own t-interval.

    Monte-Carlo standard error of a coverage at 95 %: sqrt(.95 * .05 / 800) = 0.0077, so [0.92, 0.98] is about
    +-4 standard errors. The true mean is the inverse-variance pooled estimate of all designs (they share the
    marginal law), whose error is far below any single interval's half-width.
    """
    res = bench.run_model("analytic-small", n=32, reps=800, steps=6, sampler="dpmpp_2m", seed=0, ancestral=False,
                          progress=False, corr_items=64)
    assert set(res["designs"]) >= {"iid", "antithetic", "k4", "k8", "masked", "rqmc", "rqmc_anti"}
    for name, entry in res["designs"].items():
        for stat in ("brightness", "threshold", "pixel"):
            cov = entry["stats"][stat]["coverage"]
            assert 0.92 <= cov <= 0.98, f"{name} / {stat}: coverage {cov:.3f}"
    # ...and the designs do what they are for: antithetic and K-groups beat iid on brightness.
    for name in ("antithetic", "k4", "k8", "rqmc", "rqmc_anti"):
        lo = res["designs"][name]["stats"]["brightness"]["efficiency_ci95"][0]
        assert lo > 1.5, (name, res["designs"][name]["stats"]["brightness"]["efficiency_ci95"])


# ----------------------------------------------------------------------------------------------- learned model


@pytest.fixture(scope="module")
def digits_model():
    return digits.load_digits_denoiser()


@pytest.fixture(scope="module")
def digit_data():
    pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn (a dev dependency)")
    from antithetic_sampling.nodes.evidence.train import load_digit_images, split

    return split(load_digit_images())


def test_learned_model_loads_and_is_small(digits_model):
    cfg = digits_model.config
    assert digits_model.shape == (1, 16, 16)
    assert digits_model.parameter_count() == cfg["parameters"] <= 500_000
    assert cfg["weights_sha256"] == digits.sha256_file(digits.WEIGHTS_DIR / digits.WEIGHTS_NAME)


def test_modified_weights_are_refused(tmp_path):
    for name in (digits.WEIGHTS_NAME, digits.CONFIG_NAME):
        shutil.copy(digits.WEIGHTS_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / digits.WEIGHTS_NAME).read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last tensor
    (tmp_path / digits.WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(digits.WeightsIntegrityError, match="sha256"):
        digits.load_digits_denoiser(tmp_path)
    with pytest.raises(FileNotFoundError, match="antithetic-sampling train"):
        digits.load_digits_denoiser(tmp_path / "missing")


def test_learned_model_reproduces_its_recorded_validation_loss(digits_model, digit_data):
    _, x_val = digit_data
    rec = digits_model.config["validation"]
    got = digits.validation_loss(digits_model, x_val, rec["seed"], rec["repeats"])
    assert got == pytest.approx(rec["loss"], rel=1e-4)
    # ...and it learned something: far below the loss of the untrained-but-preconditioned identity (net = 0).
    untrained = digits.build_denoiser(digits_model.config["arch"], digits_model.config["schedule"])
    for p in untrained.net.parameters():
        torch.nn.init.zeros_(p)
    assert got < 0.75 * digits.validation_loss(untrained, x_val, rec["seed"], rec["repeats"])


def test_learned_model_samples_are_digit_like(digits_model, digit_data):
    """Nearest-neighbour distance to the training digits: samples sit near the data, pixel-shuffled samples
    (the same pixel values, no digit structure) and noise do not."""
    x_train, x_val = digit_data
    noise = torch.randn((128, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    samples = harness.generate(digits_model, noise, steps=12, sampler="dpmpp_2m").clamp(-1, 1).flatten(1)
    ref = x_train.flatten(1)

    def nn_dist(a):
        return float(torch.cdist(a, ref).min(1).values.median())

    perm = torch.randperm(samples.shape[1], generator=torch.Generator().manual_seed(1))
    d_samples, d_val = nn_dist(samples), nn_dist(x_val.flatten(1))
    d_shuffled = nn_dist(samples[:, perm])
    d_noise = nn_dist(torch.rand((128, 256), generator=torch.Generator().manual_seed(2)) * 2 - 1)
    assert d_samples < 0.6 * d_shuffled and d_samples < 0.5 * d_noise, (d_samples, d_val, d_shuffled, d_noise)
    # brightness of the samples matches the data's (the marginal law is learned, not just "something smooth")
    bright = ((samples + 1) / 2).mean(1)
    data_bright = ((ref + 1) / 2).mean(1)
    assert abs(float(bright.mean() - data_bright.mean())) < 4 * float(data_bright.std()) / math.sqrt(128)


def test_training_is_seeded_and_deterministic(tmp_path, digit_data):
    from antithetic_sampling.nodes.evidence import train

    a = train.train(tmp_path / "a", steps=3, batch=16, log_every=0)
    b = train.train(tmp_path / "b", steps=3, batch=16, log_every=0)
    c = train.train(tmp_path / "c", steps=3, batch=16, log_every=0, seed=1)
    assert a["weights_sha256"] == b["weights_sha256"] != c["weights_sha256"]
    assert a["validation"]["loss"] == b["validation"]["loss"]
    model = digits.load_digits_denoiser(tmp_path / "a")  # what train writes, load reads (hash included)
    assert model.parameter_count() == a["parameters"]


def test_training_leaves_the_global_rng_alone(tmp_path, digit_data):
    from antithetic_sampling.nodes.evidence import train

    torch.manual_seed(1234)
    before = torch.get_rng_state().clone()
    train.train(tmp_path / "w", steps=1, batch=8, log_every=0)
    assert torch.equal(torch.get_rng_state(), before)


# ----------------------------------------------------------------------------------------------- commands


def test_demo_runs_end_to_end_on_the_quick_setting(tmp_path):
    out, images = tmp_path / "demo", tmp_path / "images"
    assert demo.main(["--quick", "--out", str(out), "--images", str(images)]) == 0
    for name in ("report.md", "numbers.json", "pairs.png", "ci.png", "grid_iid.png", "grid_antithetic.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    # --images copies what the docs show, the icon included (square, as the registry wants)
    assert sorted(p.name for p in images.iterdir()) == sorted(demo.PUBLISHED)
    from matplotlib.image import imread

    assert imread(images / "icon.png").shape[:2] == (256, 256)
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["weights"]["shipped"] and numbers["weights"]["sha256"] == json.loads(
        (digits.WEIGHTS_DIR / digits.CONFIG_NAME).read_text())["weights_sha256"]  # the demo says which weights it used
    text = json.dumps(numbers)
    assert "antithetic" in text and "brightness" in text
    assert "|" in (out / "report.md").read_text()  # the summary table
    # the trajectory plot's centered curve ends at the table's centered pair correlation (same pairs, same centre)
    traj = numbers["trajectory"]
    assert traj["denoised_centered"][-1] == pytest.approx(
        numbers["designs"]["antithetic"]["pair_correlation_centered"], abs=1e-4)
    for name in ("trajectory.png", "noise_shift.png", "grid_rqmc.png"):
        assert (out / name).stat().st_size > 10_000, name  # a drawn figure, not an empty canvas


def test_demo_figures_ask_their_question_in_the_title():
    pytest.importorskip("matplotlib")
    traj = {"step": [0, 1, 2], "sigma": [20.0, 1.0, 0.01], "state": [-1.0, -0.5, 0.0],
            "denoised": [0.9, 0.5, 0.1], "denoised_centered": [-0.2, -0.7, -0.8]}
    fig = demo.trajectory_figure(traj, -0.8)
    ax = fig.axes[0]
    assert "stay opposite" in ax.get_title() and ax.get_ylabel() == "correlation within a pair"
    assert not fig.legends and ax.get_legend() is not None  # inside the axes: nothing clipped at the figure's edge
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "x₀-estimate, centered (as in the table)" in labels
    assert any("final images, centered (table): -0.80" in t for t in labels)
    shift = {"band": [0.1, 2.0], "curves": {
        "without guidance": {"step": [0, 1, 2], "sigma": [20.0, 1.0, 0.01], "ratio": [1.0, 0.99, 1.2],
                             "active": [False, True, False]}}}
    fig = demo.noise_shift_figure(shift, "euler", 3)
    assert fig.axes[0].get_title().startswith("Does my sampler drift?")
    assert "guidance band (σ 0.1–2)" in [t.get_text() for lg in fig.legends for t in lg.get_texts()]


def test_bench_quick_writes_json_markdown_and_the_readme_block(tmp_path):
    readme = tmp_path / "evidence.md"
    readme.write_text("top\n<!-- BEGIN:bench-results -->\nSTALE TABLE\n<!-- END:bench-results -->\nbottom\n")
    front = tmp_path / "README.md"
    front.write_text("intro\n<!-- BEGIN:bench-headline -->\nSTALE\n<!-- END:bench-headline -->\n<!-- BEGIN:noise-timing"
                     " -->\nUNTOUCHED\n<!-- END:noise-timing -->\n")
    rc = bench.main(["--quick", "--reps", "6", "--n", "16", "--steps", "3", "--no-timing", "--out",
                     str(tmp_path / "b"), "--readme", str(readme), "--readme", str(front)])
    assert rc == 0
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    model = data["models"][0]
    assert model["model"] == "digits" and model["reps"] == 6 and model["n_images"] == 16
    assert model["designs"]["iid"]["stats"]["brightness"]["efficiency"] == pytest.approx(1.0)
    anti = model["designs"]["antithetic"]
    assert anti["within_unit"]["brightness_correlation"] < 0
    assert np.isfinite(anti["stats"]["brightness"]["efficiency"])
    text = readme.read_text()
    assert "STALE TABLE" not in text and text.startswith("top\n") and text.endswith("bottom\n")
    assert (tmp_path / "b" / "bench.md").read_text().strip() in text
    # the front page gets the headline (one row per headline design), and --no-timing leaves the timing table alone
    head = front.read_text()
    assert "STALE" not in head and "UNTOUCHED" in head and "bench-results" not in head
    assert "| antithetic pairs |" in head and "| K-groups K=4 |" in head
    assert bench.headline(data).strip() in head


def test_write_blocks_rewrites_each_block_where_it_lives_and_warns_when_none_is_found(tmp_path, capsys):
    from antithetic_sampling.nodes.evidence import noise_timing

    docs, front = tmp_path / "evidence.md", tmp_path / "README.md"
    docs.write_text("a\n<!-- BEGIN:x -->\nold x\n<!-- END:x -->\nb\n<!-- BEGIN:y -->\nold y\n<!-- END:y -->\n")
    front.write_text("front\n<!-- BEGIN:z -->\nold z\n<!-- END:z -->\nend\n")
    written = noise_timing.write_blocks([docs, front], {"x": "new x", "z": "new z", "absent": "never"})
    assert written == {"x", "z"}
    assert docs.read_text() == "a\n<!-- BEGIN:x -->\nnew x\n<!-- END:x -->\nb\n<!-- BEGIN:y -->\nold y\n<!-- END:y -->\n"
    assert front.read_text() == "front\n<!-- BEGIN:z -->\nnew z\n<!-- END:z -->\nend\n"
    assert "warning" not in capsys.readouterr().out
    assert noise_timing.write_blocks([front], {"absent": "never"}) == set()
    assert "warning: none of the blocks absent found" in capsys.readouterr().out

"""Paper-faithful Noise Awareness Guidance (Zhong et al., arXiv 2510.12497): the classifier-free and classifier
forms next to the training-free one (nodes/methods/noise_awareness.py, equation 2), the noise-condition-dropout
denoiser and the noise-level regressor shipped with the digits model, `train` (new folder / --install), `demo
--weights`, and the held-out statistics of `guidance-h2h`."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.evidence import digits
from antithetic_sampling.nodes.methods import noise_awareness as na

# ----------------------------------------------------------------------------------------------- the math


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_classifier_free_form_is_the_papers_score_mixture():
    """s~ = s(x|t) + w [s(x|t) - s(x)] with s = (D - x) / sigma^2, back to x0 units: D~ = x + sigma^2 s~."""
    x, d_c, d_u = _rand(3, 1, 4, 4, seed=1), _rand(3, 1, 4, 4, seed=2), _rand(3, 1, 4, 4, seed=3)
    sigma = torch.tensor([0.3, 1.0, 4.0])
    w = 1.7
    s2 = sigma.reshape(-1, 1, 1, 1) ** 2
    s_c, s_u = (d_c - x) / s2, (d_u - x) / s2
    by_hand = x + s2 * (s_c + w * (s_c - s_u))
    got = na.classifier_free_guidance(d_c, d_c, d_u, w)
    torch.testing.assert_close(got, by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, d_c + w * (d_c - d_u))
    # the same through the one formula (2)
    gap = na.classifier_free_score_gap(d_c, d_u, sigma)
    torch.testing.assert_close(na.level_guidance(d_c, sigma, gap, w), by_hand, rtol=1e-5, atol=1e-5)
    assert na.classifier_free_guidance(d_c, d_c, d_u, 0.0) is d_c


def test_classifier_form_by_hand_per_item_sigma():
    d, g = _rand(2, 1, 2, 2, seed=4), _rand(2, 1, 2, 2, seed=5)
    sigma = torch.tensor([0.5, 2.0])
    got = na.classifier_guidance(d, g, sigma, 0.5)
    torch.testing.assert_close(got[0], d[0] + 0.5 * 0.25 * g[0])
    torch.testing.assert_close(got[1], d[1] + 0.5 * 4.0 * g[1])


def test_training_free_form_through_equation_2_is_equation_1():
    x, d_c, d_hat = _rand(3, 1, 4, 4, seed=6), _rand(3, 1, 4, 4, seed=7), _rand(3, 1, 4, 4, seed=8)
    s_v, s_hat = torch.tensor([0.2, 1.0, 3.0]), torch.tensor([0.25, 1.1, 3.0])
    gap = na.training_free_score_gap(d_c, d_hat, x, s_v, s_hat)
    torch.testing.assert_close(na.level_guidance(d_c, s_v, gap, 1.3),
                               na.awareness_correction(d_c, d_c, d_hat, x, s_v, s_hat, 1.3), rtol=1e-5, atol=1e-5)


def test_classifier_free_gap_equals_grad_log_posterior_of_the_level():
    """Bayes: grad_x log p(sigma_1 | x) = s(x | sigma_1) - s(x). Exact check on data N(0, I) in d = 5 with a
    two-level prior: p(x | s) = N(0, (1 + s^2) I), D(x, s) = x / (1 + s^2), and the noise-unconditional branch at
    the nominal preconditioning D_u = x + s_1^2 grad log p(x)."""
    d, levels, prior = 5, torch.tensor([0.5, 1.5], dtype=torch.float64), torch.tensor([0.3, 0.7], dtype=torch.float64)
    x = _rand(4, d, seed=9).double().requires_grad_(True)

    def log_p_x_given(s):
        v = 1 + s**2
        return -0.5 * x.pow(2).sum(1) / v - 0.5 * d * torch.log(2 * math.pi * v)

    joint = torch.stack([log_p_x_given(s) + torch.log(p) for s, p in zip(levels, prior, strict=True)], 1)
    log_px = torch.logsumexp(joint, 1)
    (grad_log_px,) = torch.autograd.grad(log_px.sum(), x, retain_graph=True)
    (grad_log_post,) = torch.autograd.grad((joint[:, 0] - log_px).sum(), x)
    s1 = levels[0]
    xd = x.detach()
    d_c = xd / (1 + s1**2)
    d_u = xd + s1**2 * grad_log_px
    gap = na.classifier_free_score_gap(d_c, d_u, torch.full((4,), float(s1), dtype=torch.float64))
    torch.testing.assert_close(gap, grad_log_post, rtol=1e-9, atol=1e-9)


def test_epsilon_scaling_matches_core_by_hand():
    x, d = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 0.5]])
    got = na.epsilon_scaling(x, d, 1.005)
    torch.testing.assert_close(got, torch.tensor([[2.0 - 1.5 / 1.005, -1.0 + 1.5 / 1.005]]))
    with pytest.raises(ValueError, match="factor"):
        na.epsilon_scaling(x, d, 0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_paper_forms_refuse_non_finite_scale(bad):
    d = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="w"):
        na.classifier_free_guidance(d, d, d, bad)
    with pytest.raises(ValueError, match="w"):
        na.classifier_guidance(d, d, torch.ones(1), bad)


# ----------------------------------------------------------------------------------------------- the models


@pytest.fixture(scope="module")
def nag_model():
    return digits.load_digits_denoiser(stem=digits.NAG_STEM)


@pytest.fixture(scope="module")
def regressor():
    return digits.load_level_regressor()


@pytest.fixture(scope="module")
def val_split():
    pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn (a dev dependency)")
    from antithetic_sampling.nodes.evidence.train import load_digit_images, split

    return split(load_digit_images())


def test_dropout_denoiser_has_a_no_level_token_and_its_recorded_hash(nag_model):
    cfg = nag_model.config
    assert nag_model.has_null_level and cfg["arch"]["null_level"] is True
    assert 0.1 <= cfg["training"]["dropout"] <= 0.2
    assert cfg["weights_sha256"] == digits.sha256_file(digits.WEIGHTS_DIR / f"{digits.NAG_STEM}.safetensors")
    base = json.loads((digits.WEIGHTS_DIR / digits.CONFIG_NAME).read_text())
    assert cfg["base"]["weights_sha256"] == base["weights_sha256"]
    x, s = _rand(4, 1, 16, 16, seed=10), torch.full((4,), 0.5)
    cond, uncond = nag_model.denoise(x, s), nag_model.denoise_unconditional(x, s)
    assert not torch.allclose(cond, uncond)
    with pytest.raises(ValueError, match="noise-condition dropout"):
        digits.load_digits_denoiser().denoise_unconditional(x, s)


def test_dropout_denoiser_reproduces_both_recorded_validation_losses(nag_model, val_split):
    _, x_val = val_split
    rec = nag_model.config["validation"]
    assert digits.validation_loss(nag_model, x_val, rec["seed"], rec["repeats"]) == pytest.approx(rec["loss"], rel=1e-4)
    unc = digits.validation_loss(nag_model, x_val, rec["seed"], rec["repeats"], unconditional=True)
    assert unc == pytest.approx(rec["loss_unconditional"], rel=1e-4)
    # hiding the level costs something, but the token learned a usable unconditional branch
    assert rec["loss"] < unc < 2 * rec["loss"]


def test_regressor_reads_the_level_of_exact_states_and_its_gradient(regressor, val_split):
    _, x_val = val_split
    g = torch.Generator().manual_seed(11)
    for s in (0.2, 1.0, 5.0):
        x = x_val[:64] + s * torch.randn(x_val[:64].shape, generator=g)
        ratio = float((regressor.predict_level(x) / s).mean())
        assert 0.85 < ratio < 1.15, (s, ratio)
    x = x_val[:2] + 0.7 * torch.randn(x_val[:2].shape, generator=g)
    grad = regressor.grad_log_prob(x, 0.7)
    direction = torch.randn(x.shape, generator=g)
    eps = 1e-3
    with torch.no_grad():
        fd = (regressor.log_prob(x + eps * direction, torch.full((2,), 0.7))
              - regressor.log_prob(x - eps * direction, torch.full((2,), 0.7))) / (2 * eps)
    torch.testing.assert_close((grad * direction).flatten(1).sum(1), fd, rtol=2e-2, atol=2e-2)
    rec = regressor.config["validation"]
    assert rec == {**rec, **digits.regressor_validation(regressor, x_val, regressor.config["schedule"], rec["seed"])}


@pytest.mark.parametrize("stem", [digits.NAG_STEM, digits.REGRESSOR_STEM])
def test_tampered_variant_weights_are_refused(tmp_path, stem):
    for suffix in (".safetensors", ".json"):
        shutil.copy(digits.WEIGHTS_DIR / f"{stem}{suffix}", tmp_path / f"{stem}{suffix}")
    data = bytearray((tmp_path / f"{stem}.safetensors").read_bytes())
    data[-1] ^= 0x01
    (tmp_path / f"{stem}.safetensors").write_bytes(bytes(data))
    with pytest.raises(digits.WeightsIntegrityError, match="sha256"):
        if stem == digits.NAG_STEM:
            digits.load_digits_denoiser(tmp_path, stem=stem)
        else:
            digits.load_level_regressor(tmp_path)


def test_variant_training_is_seeded_and_deterministic(tmp_path, val_split):
    from antithetic_sampling.nodes.evidence import train

    a = train.train_level_dropout(tmp_path / "a", steps=2, batch=8, log_every=0)
    b = train.train_level_dropout(tmp_path / "b", steps=2, batch=8, log_every=0)
    c = train.train_level_dropout(tmp_path / "c", steps=2, batch=8, log_every=0, seed=1)
    assert a["weights_sha256"] == b["weights_sha256"] != c["weights_sha256"]
    ra = train.train_regressor(tmp_path / "a", steps=3, batch=8, log_every=0)
    rb = train.train_regressor(tmp_path / "b", steps=3, batch=8, log_every=0)
    assert ra["weights_sha256"] == rb["weights_sha256"]
    assert digits.load_digits_denoiser(tmp_path / "a", stem=digits.NAG_STEM).has_null_level
    assert digits.load_level_regressor(tmp_path / "a").config["weights_sha256"] == ra["weights_sha256"]


# ----------------------------------------------------------------------------------------------- train / demo CLI


def _shipped_hashes():
    return {p.name: digits.sha256_file(p) for p in sorted(digits.WEIGHTS_DIR.iterdir()) if p.is_file()}


def test_train_writes_a_new_folder_and_leaves_the_shipped_weights_alone(tmp_path, monkeypatch, val_split):
    from antithetic_sampling.nodes.evidence import train

    before = _shipped_hashes()
    monkeypatch.chdir(tmp_path)
    assert train.main(["--steps", "1", "--batch", "8"]) == 0
    assert train.main(["--steps", "1", "--batch", "8"]) == 0
    runs = sorted((tmp_path / "trained_weights").iterdir())
    assert len(runs) == 2 and all((r / digits.CONFIG_NAME).is_file() for r in runs)  # a new folder every time
    assert _shipped_hashes() == before
    with pytest.raises(SystemExit):
        train.main(["--steps", "1", "--out", str(digits.WEIGHTS_DIR)])
    assert _shipped_hashes() == before


def test_train_install_replaces_weights_hash_and_validation_loss_together(tmp_path, monkeypatch, val_split):
    from antithetic_sampling.nodes.evidence import train

    shipped = tmp_path / "shipped"
    shutil.copytree(digits.WEIGHTS_DIR, shipped)
    monkeypatch.setattr(train, "WEIGHTS_DIR", shipped)
    old = json.loads((shipped / digits.CONFIG_NAME).read_text())
    assert train.main(["--steps", "2", "--batch", "8", "--out", str(tmp_path / "new"), "--install"]) == 0
    new = json.loads((shipped / digits.CONFIG_NAME).read_text())
    assert new["weights_sha256"] != old["weights_sha256"] and new["training"]["steps"] == 2
    assert new == json.loads((tmp_path / "new" / digits.CONFIG_NAME).read_text())
    model = digits.load_digits_denoiser(shipped)  # hash verified
    _, x_val = val_split
    assert digits.validation_loss(model, x_val, new["validation"]["seed"]) == pytest.approx(new["validation"]["loss"],
                                                                                          rel=1e-4)
    assert digits.sha256_file(digits.WEIGHTS_DIR / digits.WEIGHTS_NAME) == old["weights_sha256"]  # real ones untouched


def test_demo_names_its_weights_and_refuses_tampered_ones(tmp_path, capsys):
    from antithetic_sampling.nodes.evidence import demo

    info = demo.describe_weights(digits.load_digits_denoiser())
    assert info["shipped"] and info["sha256"] == json.loads((digits.WEIGHTS_DIR / digits.CONFIG_NAME).read_text())[
        "weights_sha256"]
    assert "shipped" in info["line"] and str(digits.WEIGHTS_DIR) in info["line"]
    for name in (digits.WEIGHTS_NAME, digits.CONFIG_NAME):
        shutil.copy(digits.WEIGHTS_DIR / name, tmp_path / name)
    other = demo.describe_weights(digits.load_digits_denoiser(tmp_path))
    assert not other["shipped"] and "NOT the shipped" in other["line"]
    data = bytearray((tmp_path / digits.WEIGHTS_NAME).read_bytes())
    data[-1] ^= 0x01
    (tmp_path / digits.WEIGHTS_NAME).write_bytes(bytes(data))
    assert demo.main(["--quick", "--weights", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "sha256" in capsys.readouterr().err
    assert not (tmp_path / "out" / "numbers.json").exists()


# ----------------------------------------------------------------------------------------------- statistics


def test_sign_flip_test_is_exact():
    from antithetic_sampling.nodes.evidence import guidance_h2h as h2h

    p_lo, p_hi = h2h.sign_flip_p(np.array([-1.0, -2.0, -3.0, -4.0, -0.5, -1.5, -2.5, -3.5]))
    assert p_lo == pytest.approx(1 / 256) and p_hi == 1.0
    p_lo, _ = h2h.sign_flip_p(np.array([-1.0, -2.0, -3.0, -4.0, -0.5, -1.5, -2.5, 0.25]))
    assert p_lo == pytest.approx(2 / 256)  # only the observed pattern and the all-negative one are as extreme
    # under no effect the one-sided test rejects at most at its level
    rng = np.random.default_rng(0)
    rejections = np.mean([h2h.sign_flip_p(rng.standard_normal(8))[0] <= h2h.ALPHA for _ in range(2000)])
    assert rejections <= h2h.ALPHA + 3 * math.sqrt(h2h.ALPHA * (1 - h2h.ALPHA) / 2000)


def test_guidance_h2h_quick_writes_table_with_held_out_verdicts(tmp_path):
    from antithetic_sampling.nodes.evidence import guidance_h2h as h2h

    doc = tmp_path / "doc.md"
    doc.write_text("x\n<!-- BEGIN:guidance-h2h -->\nold\n<!-- END:guidance-h2h -->\ny\n")
    assert h2h.main(["--quick", "--out", str(tmp_path), "--readme", str(doc), "--no-progress"]) == 0
    res = json.loads((tmp_path / "guidance_h2h.json").read_text())
    sel = res["selection"]
    assert sel["tuning_seeds"] == [0, 1] and sel["held_out_seeds"] == [2, 3]
    for st in sel["report"].values():
        assert st["none"]["model_evals_per_step"] == 1.0
        assert st["cf w=1"]["model_evals_per_step"] == 2.0
        assert st["cls w=1"]["regressor_evals_per_step"] == 1.0
    text = doc.read_text()
    assert "old" not in text and "held-out" in text and "σ̂/σ" in text
    # the table can be re-derived from the JSON alone (same selection, same text)
    assert h2h.main(["--from-json", str(tmp_path / "guidance_h2h.json"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "guidance_h2h.md").read_text() == (tmp_path / "guidance_h2h.md").read_text()

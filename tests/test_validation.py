"""Bad input to the public math of nodes/methods: a ValueError that names the argument, one case per test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.methods import noise_awareness as na
from antithetic_sampling.nodes.methods.antithetic import antithetic_noise, incomplete_groups
from antithetic_sampling.nodes.methods.confidence import image_statistic
from antithetic_sampling.nodes.methods.diversity import (
    cosine_similarity_matrix,
    gaussian_window,
    pair_diversity,
    validate_images,
    vendi_score,
)
from antithetic_sampling.nodes.methods.keyed_rng import keyed_generator, keyed_seed
from antithetic_sampling.nodes.methods.sobol_rqmc import sobol_rqmc_noise
from antithetic_sampling.nodes.methods.step_noise import MirroredStepNoise

BAD_SEEDS = [float("nan"), 1.7, 3.0, -1, 2**64, True, "7", None]


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_antithetic_noise_refuses_bad_seeds(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
        antithetic_noise((2, 4, 8, 8), seed)


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_sobol_rqmc_noise_refuses_bad_seeds(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
        sobol_rqmc_noise((2, 4, 8, 8), seed, points_per_replicate=2)


@pytest.mark.parametrize("seed", [s for s in BAD_SEEDS if s is not None], ids=repr)
def test_step_noise_refuses_bad_seeds(seed):  # None is allowed there: it means seed 0
    with pytest.raises(ValueError, match=r"seed must be an integer"):
        MirroredStepNoise(torch.zeros(2, 4, 8, 8), seed)


@pytest.mark.parametrize("seed", [float("nan"), 1.7, -3, 2**64], ids=repr)
def test_guidance_reference_noise_and_guide_refuse_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        na.reference_noise((1, 4), seed, 0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        na.NoiseAwarenessGuide(seed=seed)


def test_valid_seeds_cover_the_whole_64_bit_range():
    for seed in (0, 1, 2**63, 2**64 - 1, np.int64(5), np.uint64(2**64 - 1)):
        keyed_generator(seed, 1)
    assert keyed_seed(np.int64(5), 1) == keyed_seed(5, 1)
    torch.testing.assert_close(antithetic_noise((2, 4, 4, 4), 2**64 - 1)[0], -antithetic_noise((2, 4, 4, 4), 2**64 - 1)[1])


def test_mirrored_step_noise_refuses_an_empty_batch():
    with pytest.raises(ValueError, match=r"x must be a batch \[B, \.\.\.\] with B >= 1"):
        MirroredStepNoise(torch.zeros(0, 4, 8, 8), 0)


def test_mirrored_step_noise_halves_refuses_a_design_size_below_the_batch():
    with pytest.raises(ValueError, match="design_size 2 is smaller than the batch"):
        MirroredStepNoise(torch.zeros(6, 4, 8, 8), 0, layout="halves", design_size=2)
    # at or above the batch it works, and each pair is mirrored
    noise = MirroredStepNoise(torch.zeros(4, 4, 8, 8), 0, layout="halves", design_size=4)(1.0, 0.5)
    torch.testing.assert_close(noise[0], -noise[2])


@pytest.mark.parametrize("w", [float("nan"), float("inf"), -float("inf")], ids=repr)
def test_guidance_refuses_non_finite_scale(w):
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="w must be a finite number"):
        na.awareness_correction(x, x, x, x, torch.ones(2), torch.ones(2), w)
    with pytest.raises(ValueError, match="w must be a finite number"):
        na.NoiseAwarenessGuide(w=w)
    with pytest.raises(ValueError, match="w must be a finite number"):
        na.guidance_step(x, torch.ones(2), x, x, lambda a, s: a, w, 0.5, "naive_residual")


@pytest.mark.parametrize("max_shift", [float("nan"), float("inf"), -0.1], ids=repr)
def test_guidance_refuses_bad_max_shift(max_shift):
    with pytest.raises(ValueError, match="max_level_shift must be"):
        na.clamp_level(torch.ones(2), torch.ones(2), max_shift)
    with pytest.raises(ValueError, match="max_shift must be"):
        na.NoiseAwarenessGuide(max_shift=max_shift)


def test_guidance_refuses_swapped_band_ends():
    with pytest.raises(ValueError, match=r"sigma_end \(5\) must not exceed sigma_start \(1\).*swap"):
        na.in_band(torch.ones(3), 1.0, 5.0)
    with pytest.raises(ValueError, match="sigma_end .* must not exceed sigma_start"):
        na.NoiseAwarenessGuide(sigma_start=0.5, sigma_end=2.0)
    with pytest.raises(ValueError, match="sigma_start must be a finite number"):
        na.in_band(torch.ones(3), math.nan, 0.0)
    assert na.in_band(torch.tensor([0.5, 3.0]), 1.0, 0.1).tolist() == [True, False]


def test_vendi_score_refuses_empty_features():
    with pytest.raises(ValueError, match=r"vendi_score: features must be \[N, D\] with N >= 1"):
        vendi_score(torch.zeros(0, 16))
    with pytest.raises(ValueError, match=r"vendi_score: features must be \[N, D\]"):
        vendi_score(np.zeros((4, 0)))
    with pytest.raises(ValueError, match="vendi_score: kernel must be a square"):
        vendi_score(kernel=np.zeros((0, 0)))
    assert vendi_score(torch.eye(3)) == pytest.approx(3.0)


def test_images_in_0_to_255_are_refused_naming_the_input():
    images = torch.rand(4, 8, 8, 3, generator=torch.Generator().manual_seed(0)) * 255
    with pytest.raises(ValueError, match=r"images: pixel values reach .* 0\.\.1 .* divide by 255"):
        validate_images(images)
    with pytest.raises(ValueError, match=r"reference: pixel values reach"):
        validate_images(images, "reference")
    with pytest.raises(ValueError, match=r"images: pixel values reach"):
        pair_diversity(images)
    with pytest.raises(ValueError, match=r"images: pixel values reach"):
        image_statistic(images.numpy())
    assert validate_images(images / 255).shape == images.shape  # 0..1 passes


def test_cosine_similarity_matrix_refuses_empty_features():
    with pytest.raises(ValueError, match=r"features must be \[N, D\]"):
        cosine_similarity_matrix(torch.zeros(0, 3))


@pytest.mark.parametrize("size, sigma, name", [(0, 1.5, "size"), (2.5, 1.5, "size"), (11, float("nan"), "sigma"),
                                               (11, 0.0, "sigma")])
def test_gaussian_window_refuses_bad_size_and_sigma(size, sigma, name):
    with pytest.raises(ValueError, match=f"{name} must be"):
        gaussian_window(size, sigma)


def test_sobol_refuses_an_empty_batch_and_a_non_integer_spectral_count():
    with pytest.raises(ValueError, match="B >= 1"):
        sobol_rqmc_noise((0, 4, 4, 4), 0)
    with pytest.raises(ValueError, match="spectral_coefficients must be an integer"):
        sobol_rqmc_noise((2, 4, 4, 4), 0, mode="spectral", spectral_coefficients=float("nan"))


def test_incomplete_groups_refuses_a_bad_group_size():
    with pytest.raises(ValueError, match="group_size must be an integer between 2"):
        incomplete_groups(4, 1, "interleaved")


def test_guide_refuses_nan_min_excess():
    with pytest.raises(ValueError, match="min_excess must be a finite number"):
        na.NoiseAwarenessGuide(min_excess=float("nan"))

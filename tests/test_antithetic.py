"""Antithetic pairs, K-groups, layouts, masks, batch_index and determinism (no ComfyUI needed)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from antithetic_sampling.nodes.methods.antithetic import (
    antithetic_noise,
    binarize_mask,
    group_noise,
    group_of,
    incomplete_groups,
)
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parents[1]

SHAPES = {
    "sd15": (4, 4, 64, 64),
    "sdxl": (2, 4, 128, 128),
    "flux": (2, 16, 32, 32),
    "video": (4, 16, 3, 8, 8),
}


def test_pairs_are_exact_negatives_interleaved():
    z = antithetic_noise((6, 4, 8, 8), seed=7)
    assert z.dtype == torch.float32 and z.device.type == "cpu"
    for g in range(3):
        assert torch.equal(z[2 * g + 1], -z[2 * g])
    # different groups are different draws
    assert not torch.allclose(z[0], z[2])


def test_halves_layout_pairs_i_with_i_plus_n():
    z = antithetic_noise((8, 4, 8, 8), seed=3, layout="halves")
    for i in range(4):
        assert torch.equal(z[i + 4], -z[i])


@pytest.mark.parametrize("k", [3, 4, 8])
def test_k_groups_sum_to_zero_and_have_unit_variance(k):
    z = antithetic_noise((2 * k, 4, 32, 32), seed=11, k=k)
    for g in range(2):
        grp = z[g * k:(g + 1) * k]
        assert grp.sum(0).abs().max() < 1e-4
    assert abs(z.var().item() - 1.0) < 0.02


@pytest.mark.parametrize("k", [2, 4, 8])
def test_pairwise_correlation_is_minus_one_over_k_minus_one(k):
    z = antithetic_noise((k * 4, 4, 32, 32), seed=5, k=k).reshape(k * 4, -1)
    corr = torch.corrcoef(z)
    target = -1.0 / (k - 1)
    vals = [corr[g * k + i, g * k + j].item() for g in range(4) for i in range(k) for j in range(k) if i < j]
    # 4096 coordinates per item: sampling sd of a correlation ~ 1/sqrt(4096) = 0.016
    assert abs(np.mean(vals) - target) < 0.02


@pytest.mark.parametrize("k", [2, 4])
def test_marginals_are_standard_normal_ks(k):
    z = antithetic_noise((k * 8, 4, 16, 16), seed=123, k=k)
    # One member per group (members within a group are dependent); coordinates are independent.
    for member in range(k):
        sample = z[member::k].reshape(-1).double().numpy()
        p = stats.kstest(sample, "norm").pvalue
        assert p > 0.001, (member, p)


def test_batch_index_slices_reproduce_the_full_batch():
    full = antithetic_noise((8, 4, 8, 8), seed=42, k=4)
    for idx in ([5], [0, 7], [3, 3, 6]):
        part = antithetic_noise((len(idx), 4, 8, 8), seed=42, k=4, batch_index=idx)
        for row, i in enumerate(idx):
            assert torch.equal(part[row], full[i])


def test_halves_with_batch_index_uses_design_size():
    full = antithetic_noise((8, 4, 8, 8), seed=9, layout="halves")
    part = antithetic_noise((1, 4, 8, 8), seed=9, layout="halves", batch_index=[2], design_size=8)
    assert torch.equal(part[0], full[2])
    # auto design size from batch_index reaching the last item
    tail = antithetic_noise((2, 4, 8, 8), seed=9, layout="halves", batch_index=[6, 7])
    assert torch.equal(tail[0], full[6]) and torch.equal(tail[1], full[7])


def test_non_multiple_batch_has_incomplete_trailing_group():
    z = antithetic_noise((5, 4, 8, 8), seed=1)
    assert torch.equal(z[1], -z[0]) and torch.equal(z[3], -z[2])
    assert incomplete_groups(5, 2, "interleaved") == 1
    assert incomplete_groups(8, 4, "interleaved") == 0
    assert incomplete_groups(6, 4, "interleaved") == 2
    # trailing item equals the leader of group 2 in a bigger batch
    assert torch.equal(z[4], antithetic_noise((6, 4, 8, 8), seed=1)[4])


def test_mask_negates_only_inside():
    mask = torch.zeros(64, 64)
    mask[:32] = 1.0  # top half of the image
    z = antithetic_noise((2, 4, 8, 8), seed=4, mask=mask)
    assert torch.equal(z[1, :, :4], -z[0, :, :4])
    assert torch.equal(z[1, :, 4:], z[0, :, 4:])


def test_soft_mask_is_binarised_and_items_stay_standard_normal():
    soft = torch.linspace(0, 1, 64).repeat(64, 1)  # horizontal ramp
    m = binarize_mask(soft, (8, 8))
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    z = antithetic_noise((64, 4, 8, 8), seed=8, k=4, mask=soft)
    assert abs(z.std().item() - 1.0) < 0.03
    p = stats.kstest(z[1::4].reshape(-1).double().numpy(), "norm").pvalue
    assert p > 0.001


def test_masked_k_groups_share_leader_outside():
    mask = torch.zeros(1, 16, 16)
    mask[:, :, 8:] = 1.0
    z = antithetic_noise((4, 4, 4, 4), seed=2, k=4, mask=mask)
    for j in range(1, 4):
        assert torch.equal(z[j, ..., :2], z[0, ..., :2])
    assert z[:, ..., 2:].sum(0).abs().max() < 1e-5


@pytest.mark.parametrize("name", list(SHAPES))
def test_shapes(name):
    shape = SHAPES[name]
    z = antithetic_noise(shape, seed=0)
    assert tuple(z.shape) == shape
    assert torch.equal(z[1], -z[0])


def test_video_mask_broadcasts_over_frames():
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    z = antithetic_noise((2, 16, 3, 8, 8), seed=0, mask=mask)
    assert torch.equal(z[1, ..., :4], -z[0, ..., :4])
    assert torch.equal(z[1, ..., 4:], z[0, ..., 4:])


def test_global_rng_untouched():
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    antithetic_noise((4, 4, 8, 8), seed=99, k=4)
    assert torch.equal(torch.rand(3), expected)


def test_deterministic_across_processes():
    code = textwrap.dedent(
        f"""
        import importlib.util, sys, pathlib
        root = pathlib.Path({str(ROOT)!r})
        spec = importlib.util.spec_from_file_location("antithetic_sampling", root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        m = importlib.util.module_from_spec(spec); sys.modules["antithetic_sampling"] = m; spec.loader.exec_module(m)
        from antithetic_sampling.nodes.methods.antithetic import antithetic_noise
        z = antithetic_noise((4, 4, 8, 8), seed=2024, k=4)
        print(repr(z.double().sum().item()), repr(z[3, 1, 2, 5].item()))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    z = antithetic_noise((4, 4, 8, 8), seed=2024, k=4)
    assert float(out[0]) == z.double().sum().item()
    assert float(out[1]) == z[3, 1, 2, 5].item()


def test_large_seed_accepted():
    z = antithetic_noise((2, 4, 4, 4), seed=0xFFFFFFFFFFFFFFFF)
    assert torch.equal(z[1], -z[0])


def test_group_of():
    assert group_of(5, 2, "interleaved", 8) == (2, 1)
    assert group_of(5, 2, "halves", 8) == (1, 1)
    assert group_of(2, 4, "halves", 8) == (0, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=1), "group_size"),
        (dict(k=65), "group_size"),
        (dict(layout="zigzag"), "layout"),
        (dict(design_size=-1), "design_size"),
        (dict(batch_index=[0, 1]), "batch_index has 2 entries"),
        (dict(batch_index=[-1, 0, 1, 2]), "batch_index entries"),
        (dict(batch_index=[0, 1, 2, 9], design_size=4), "design_size 4 is smaller"),
        (dict(mask=torch.zeros(2, 2, 2, 2)), "mask must have shape"),
        (dict(mask=torch.full((8, 8), float("nan"))), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        antithetic_noise((4, 4, 8, 8), seed=0, **kwargs)


def test_bad_shape():
    with pytest.raises(ValueError, match="latent shape"):
        antithetic_noise((0, 4), seed=0)
    with pytest.raises(ValueError, match="mask needs a latent"):
        antithetic_noise((2, 16), seed=0, mask=torch.ones(4, 4))


@pytest.mark.parametrize("layout", ["interleaved", "halves"])
def test_pairs_fast_path_gives_the_keyed_group_draws(layout):
    """Unmasked pairs are written in place; the numbers are exactly the (seed, pair)-keyed group draws."""
    shape = (6, 4, 5, 7)
    z = antithetic_noise(shape, seed=11, k=2, layout=layout)
    for i in range(shape[0]):
        g, j = group_of(i, 2, layout, shape[0])
        assert torch.equal(z[i], group_noise(11, g, 2, shape[1:])[j])
    # a slice through batch_index, members in reverse order, still reproduces them
    part = antithetic_noise((3, 4, 5, 7), seed=11, k=2, layout=layout, design_size=6, batch_index=[5, 2, 3])
    assert torch.equal(part, z[[5, 2, 3]])

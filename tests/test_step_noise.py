"""Mirrored step noise (pure) and the NOISE objects' ComfyUI protocol (no ComfyUI needed)."""

from __future__ import annotations

import pytest
import torch
from antithetic_sampling.nodes.methods.step_noise import MirroredStepNoise, step_row_seed
from antithetic_sampling.nodes.noise_objects import (
    AntitheticNoiseGenerator,
    SobolRQMCNoiseGenerator,
    map_latent_samples,
)
from scipy import stats


def test_step_noise_pairs_are_mirrored_every_call():
    x = torch.zeros(6, 4, 8, 8)
    ns = MirroredStepNoise(x, seed=3)
    seen = []
    for step in range(4):
        e = ns(torch.tensor(1.0 / (step + 1)), torch.tensor(0.5 / (step + 1)))
        assert e.shape == x.shape
        for g in range(3):
            assert torch.equal(e[2 * g + 1], -e[2 * g])
        seen.append(e)
    assert not torch.allclose(seen[0], seen[1])  # fresh noise per step


def test_step_noise_k_groups_and_unit_variance():
    x = torch.zeros(8, 4, 16, 16)
    ns = MirroredStepNoise(x, seed=1, k=4)
    e = torch.cat([ns(1.0, 0.5) for _ in range(20)])
    assert e.reshape(-1, 4, 4, 16, 16).sum(1).abs().max() < 1e-4
    p = stats.kstest(e[1::4].reshape(-1).double().numpy(), "norm").pvalue
    assert p > 0.001


def test_step_noise_halves_and_mask():
    x = torch.zeros(4, 4, 8, 8)
    e = MirroredStepNoise(x, seed=2, layout="halves")(1.0, 0.5)
    assert torch.equal(e[2], -e[0]) and torch.equal(e[3], -e[1])
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    e = MirroredStepNoise(x, seed=2, mask=mask)(1.0, 0.5)
    assert torch.equal(e[1, ..., :4], -e[0, ..., :4]) and torch.equal(e[1, ..., 4:], e[0, ..., 4:])


def test_step_noise_follows_device_dtype_and_custom_base():
    x = torch.zeros(2, 4, 4, 4, dtype=torch.float16)
    calls = []

    def base(leaders, row_seeds):
        calls.append((tuple(leaders.shape), row_seeds))
        return lambda s, sn: torch.ones(leaders.shape)

    e = MirroredStepNoise(x, seed=5, base=base)(1.0, 0.5)
    assert e.dtype == torch.float16
    assert calls == [((1, 4, 4, 4), [step_row_seed(5, 0, 0)])]  # one leader for one pair, seeded by (seed, group)
    assert torch.equal(e[0], torch.ones(4, 4, 4, dtype=torch.float16)) and torch.equal(e[1], -e[0])


def _run(ns, calls=4):
    return torch.stack([ns(torch.tensor(1.0 / (c + 1)), torch.tensor(0.5 / (c + 1))) for c in range(calls)])


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("layout", ["interleaved", "halves"])
def test_step_noise_of_a_slice_equals_the_full_batch(k, layout):
    """Group g's step noise depends only on (seed, g, call): LatentFromBatch slices and single items reproduce the
    full batch, for both layouts (halves with design_size) and K-groups."""
    n = 4 * k
    full = _run(MirroredStepNoise(torch.zeros(n, 4, 8, 8), 7, k, layout))
    for index in ([2, 3], [n - 1], [1, n - 2, 0], list(range(k, 2 * k))):
        part = _run(MirroredStepNoise(torch.zeros(len(index), 4, 8, 8), 7, k, layout, design_size=n,
                                      batch_index=index))
        assert torch.equal(part, full[:, index]), index
    other = _run(MirroredStepNoise(torch.zeros(n, 4, 8, 8), 8, k, layout))
    assert not torch.equal(other, full)


def test_step_noise_slice_with_mask_and_custom_base_uses_its_groups():
    mask = torch.zeros(2, 8, 8)
    mask[0, :, :4] = 1
    mask[1, :4] = 1
    full = _run(MirroredStepNoise(torch.zeros(4, 4, 8, 8), 3, mask=mask))
    part = _run(MirroredStepNoise(torch.zeros(2, 4, 8, 8), 3, mask=mask, batch_index=[2, 3]))
    assert torch.equal(part, full[:, 2:])  # group 1 keeps mask[1] in the slice too
    seen = []
    MirroredStepNoise(torch.zeros(2, 4, 4, 4), 3, base=lambda leaders, seeds: seen.append(seeds) or (lambda s, t: 0),
                      batch_index=[4, 5])
    assert seen == [[step_row_seed(3, 2, 0)]]


def test_step_noise_does_not_touch_global_rng():
    torch.manual_seed(0)
    a = torch.rand(2)
    torch.manual_seed(0)
    MirroredStepNoise(torch.zeros(2, 4, 4, 4), seed=1)(1.0, 0.5)
    assert torch.equal(torch.rand(2), a)


class FakeNested:
    """Stand-in for comfy.nested_tensor.NestedTensor (newer ComfyUI): is_nested, unbind(), ctor from a list."""

    is_nested = True

    def __init__(self, tensors):
        self.tensors = list(tensors)

    def unbind(self):
        return self.tensors


def test_noise_objects_follow_the_core_protocol():
    latent = {"samples": torch.zeros(4, 4, 8, 8)}
    for noise in (AntitheticNoiseGenerator(5), SobolRQMCNoiseGenerator(5, points_per_replicate=4)):
        assert noise.seed == 5
        z = noise.generate_noise(latent)
        assert z.shape == latent["samples"].shape and z.dtype == torch.float32 and z.device.type == "cpu"
        assert noise.design["kind"] in {"antithetic", "sobol_rqmc"}


def test_noise_object_honours_batch_index():
    noise = AntitheticNoiseGenerator(8, group_size=4)
    full = noise.generate_noise({"samples": torch.zeros(8, 16, 4, 4)})
    part = noise.generate_noise({"samples": torch.zeros(2, 16, 4, 4), "batch_index": [6, 1]})
    assert torch.equal(part[0], full[6]) and torch.equal(part[1], full[1])


def test_nested_latents_get_one_design_per_component():
    samples = FakeNested([torch.zeros(2, 16, 3, 8, 8), torch.zeros(2, 8, 32)])
    out = AntitheticNoiseGenerator(1).generate_noise({"samples": samples})
    assert isinstance(out, FakeNested)
    video, audio = out.unbind()
    assert video.shape == (2, 16, 3, 8, 8) and audio.shape == (2, 8, 32)
    assert torch.equal(video[1], -video[0]) and torch.equal(audio[1], -audio[0])
    out2 = SobolRQMCNoiseGenerator(1, points_per_replicate=2).generate_noise({"samples": samples})
    assert [t.shape for t in out2.unbind()] == [t.shape for t in samples.unbind()]


def test_incomplete_group_is_logged(caplog):
    with caplog.at_level("WARNING", logger="antithetic_sampling"):
        AntitheticNoiseGenerator(1, group_size=4).generate_noise({"samples": torch.zeros(6, 4, 4, 4)})
    assert "not a multiple of group_size 4" in caplog.text


def test_map_latent_samples_rejects_non_tensor():
    with pytest.raises(ValueError, match="must be a tensor"):
        map_latent_samples([1, 2], lambda shape, stream: torch.zeros(shape))


def test_generator_validates_design():
    with pytest.raises(ValueError, match="group_size"):
        AntitheticNoiseGenerator(0, group_size=1)


def test_noise_objects_note_the_batch_index_for_the_sampler():
    """Core hands a SAMPLER no latent: the NOISE objects note the batch_index of the latent they just generated
    noise for, per (seed, batch size), and the mirrored sampler recalls it."""
    from antithetic_sampling.nodes.noise_objects import recall_batch_index

    AntitheticNoiseGenerator(41).generate_noise({"samples": torch.zeros(2, 4, 4, 4), "batch_index": [2, 3]})
    assert recall_batch_index(41, 2) == (2, 3)
    AntitheticNoiseGenerator(41).generate_noise({"samples": torch.zeros(2, 4, 4, 4)})
    assert recall_batch_index(41, 2) is None  # a later plain batch overrides the slice
    SobolRQMCNoiseGenerator(42, points_per_replicate=2).generate_noise(
        {"samples": torch.zeros(1, 4, 4, 4), "batch_index": [5]})
    assert recall_batch_index(42, 1) == (5,)
    assert recall_batch_index(43, 1) is None and recall_batch_index(None, 1) is None

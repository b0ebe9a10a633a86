"""Foundation e2e: the pack loads in a real ComfyUI and its NOISE / SAMPLER nodes run through ``POST /prompt``.

Uses the session fixture ``comfy_server`` (tests/conftest.py, nodes/local_comfy/server.py): a ComfyUI ``--cpu`` server
with the pack symlinked into ``custom_nodes`` and a tiny random-weight SD1.5-layout checkpoint. Skipped, with
the reason, when no ComfyUI checkout is found. Weights are random, so only the plumbing is checked: node
registration, schema, that workflows execute and return the right number of images, and our error messages.
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
from antithetic_sampling.nodes.local_comfy.errors import ComfyError, execution_error

pytestmark = pytest.mark.e2e

STEPS = 3
NOISE_NODES = ("AntitheticLatentNoise", "SobolRQMCLatentBatch")


def antithetic(seed: int, group_size: int = 2, layout: str = "interleaved", **extra) -> dict:
    return {
        "class_type": "AntitheticLatentNoise",
        "inputs": {"noise_seed": seed, "group_size": group_size, "layout": layout, **extra},
    }


def sobol(seed: int, points_per_replicate: int = 2, **extra) -> dict:
    inputs = {
        "noise_seed": seed,
        "points_per_replicate": points_per_replicate,
        "mode": "auto",
        "spectral_coefficients": 16,
        "antithetic": False,
    }
    inputs.update(extra)
    return {"class_type": "SobolRQMCLatentBatch", "inputs": inputs}


def antithetic_sampler(sampler_name: str = "euler_ancestral", group_size: int = 2, layout: str = "interleaved"):
    return {
        "class_type": "AntitheticSampler",
        "inputs": {"sampler_name": sampler_name, "group_size": group_size, "layout": layout},
    }


def run_images(server, graph) -> list[np.ndarray]:
    history = server.run(graph)
    images = [np.asarray(im.convert("RGB"), dtype=np.int16) for im in server.images(history)]
    for a in images:
        assert a.shape == (64, 64, 3)
    return images


def assert_distinct(images: list[np.ndarray]) -> None:
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).mean() > 1.0, f"images {i} and {j} are identical"


# ------------------------------------------------------------------------------------------ registration


def test_pack_imports_cleanly(comfy_server, comfy_graph):
    log = comfy_server.log_text()
    assert "custom_nodes/antithetic-sampling" in log, "the pack was not loaded from custom_nodes at all"
    # Control: a prompt that fails inside one of our nodes after start-up (ComfyUI 0.33 logs its traceback at
    # ERROR level, through the pack's files) is an execution error, never an import problem.
    graph = comfy_graph(sobol(seed=60, points_per_replicate=4, mode="spectral", spectral_coefficients=65), steps=STEPS)
    with pytest.raises(ComfyError):
        comfy_server.run(graph)
    after = comfy_server.log_text()
    assert "spectral_coefficients must be between 1 and 64" in after[len(log):], "the failed prompt was not logged"
    problems = comfy_server.pack_import_problems()
    assert not problems, "pack import problems in the ComfyUI log:\n" + "\n---\n".join(problems)
    for line in after.splitlines():
        if "antithetic-sampling" in line:
            assert "IMPORT FAILED" not in line, line


BROKEN_ON_PURPOSE = "deliberately broken copy of the pack (tests/test_e2e_noise.py control)"


def test_import_problem_of_a_broken_pack_copy_is_detected(comfy_server, tmp_path):
    """Control for the test above: the same check, on a server whose copy of the pack cannot import, fires."""
    root = pathlib.Path(__file__).resolve().parents[1]  # this checkout: the pack
    folder = "antithetic-sampling"  # the folder name the e2e server gives the pack in custom_nodes
    base = tmp_path / "broken_base"
    copy = base / "custom_nodes" / folder
    shutil.copytree(root / "nodes", copy / "nodes", ignore=shutil.ignore_patterns("__pycache__", "evidence"))
    shutil.copy(root / "__init__.py", copy / "__init__.py")
    ext = copy / "nodes" / "extension.py"
    ext.write_text(ext.read_text(encoding="utf-8") + f"\nraise ImportError({BROKEN_ON_PURPOSE!r})\n", encoding="utf-8")
    with type(comfy_server)(comfy_server.env, base, checkpoint=None) as broken:  # a second ComfyServer
        assert "antithetic" not in " ".join(broken.object_info()).lower(), "the broken copy registered nodes"
        problems = broken.pack_import_problems()
    assert problems, "no import problem found for a pack copy that raises ImportError:\n" + broken.log_text()[-3000:]
    assert any(BROKEN_ON_PURPOSE in p for p in problems), problems


@pytest.mark.parametrize("node_id", NOISE_NODES)
def test_noise_nodes_in_object_info(comfy_server, node_id):
    info = comfy_server.object_info(node_id)
    assert info["output"] == ["NOISE"]
    assert info["category"].startswith("antithetic/")
    assert "ICLR 2026" in info["description"]
    assert (
        info["display_name"]
        == {"AntitheticLatentNoise": "Antithetic Latent Noise", "SobolRQMCLatentBatch": "Sobol RQMC Latent Batch"}[
            node_id
        ]
    )
    inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    assert "noise_seed" in inputs
    for name, spec in inputs.items():
        assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_antithetic_sampler_in_object_info(comfy_server):
    info = comfy_server.object_info("AntitheticSampler")
    assert info["output"] == ["SAMPLER"]
    assert info["category"].startswith("antithetic/")
    inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    for name, spec in inputs.items():
        assert len(spec) > 1 and spec[1].get("tooltip"), f"AntitheticSampler.{name} has no tooltip"
    # Every ComfyUI sampler is offered, ancestral and SDE ones included.
    core = comfy_server.object_info("KSamplerSelect")["input"]["required"]["sampler_name"]
    core_names = core[0] if isinstance(core[0], list) else core[1]["options"]
    ours = inputs["sampler_name"]
    our_names = ours[0] if isinstance(ours[0], list) else ours[1]["options"]
    assert set(core_names) <= set(our_names)


# ------------------------------------------------------------------------------------------ workflows


def test_core_noise_baseline(comfy_server, comfy_graph):
    """The fixture's plain RandomNoise graph works (separates fixture problems from pack problems)."""
    images = run_images(comfy_server, comfy_graph(seed=11, batch_size=2, steps=STEPS))
    assert len(images) == 2


@pytest.mark.parametrize("layout", ["interleaved", "halves"])
def test_antithetic_noise_workflow(comfy_server, comfy_graph, layout):
    graph = comfy_graph(antithetic(seed=21, layout=layout), batch_size=4, steps=STEPS, filename_prefix=f"anti_{layout}")
    images = run_images(comfy_server, graph)
    assert len(images) == 4
    assert_distinct(images)


def test_antithetic_k_groups_workflow(comfy_server, comfy_graph):
    images = run_images(comfy_server, comfy_graph(antithetic(seed=22, group_size=4), batch_size=4, steps=STEPS))
    assert len(images) == 4
    assert_distinct(images)


def test_incomplete_group_runs_and_is_logged(comfy_server, comfy_graph):
    """Documented behaviour: a batch that is not a multiple of K ends with an incomplete group, with a warning."""
    images = run_images(comfy_server, comfy_graph(antithetic(seed=23, group_size=3), batch_size=4, steps=STEPS))
    assert len(images) == 4
    assert "not a multiple of group_size 3" in comfy_server.log_text()


@pytest.mark.parametrize("antithetic_reflection", [False, True])
def test_sobol_rqmc_workflow(comfy_server, comfy_graph, antithetic_reflection):
    noise = sobol(seed=31 + antithetic_reflection, points_per_replicate=2, antithetic=antithetic_reflection)
    images = run_images(comfy_server, comfy_graph(noise, batch_size=4, steps=STEPS))
    assert len(images) == 4
    assert_distinct(images)


def test_sobol_rqmc_spectral_workflow(comfy_server, comfy_graph):
    noise = sobol(seed=33, points_per_replicate=4, mode="spectral", spectral_coefficients=16)
    images = run_images(comfy_server, comfy_graph(noise, batch_size=4, steps=STEPS))
    assert len(images) == 4


@pytest.mark.parametrize("sampler_name", ["euler_ancestral", "dpmpp_2m_sde"])
def test_antithetic_sampler_workflow(comfy_server, comfy_graph, sampler_name):
    graph = comfy_graph(antithetic(seed=41), antithetic_sampler(sampler_name), batch_size=4, steps=STEPS)
    images = run_images(comfy_server, graph)
    assert len(images) == 4
    assert_distinct(images)


def test_batch_index_slice_matches_full_batch(comfy_server, comfy_graph):
    """LatentFromBatch sets batch_index: item 2 sampled alone must match item 2 of the full batch.

    Deterministic sampler, same noise (keyed on (seed, group)), same model; only the batch size of the UNet call
    differs, so allow a small float/PNG rounding difference.
    """
    noise = antithetic(seed=51)
    full = run_images(comfy_server, comfy_graph(noise, batch_size=4, steps=STEPS, filename_prefix="full"))
    graph = comfy_graph(
        noise,
        steps=STEPS,
        filename_prefix="slice",
        latent={"class_type": "LatentFromBatch", "inputs": {"samples": ["empty", 0], "batch_index": 2, "length": 1}},
        extra_nodes={
            "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 4}}
        },
    )
    (alone,) = run_images(comfy_server, graph)
    diff = np.abs(alone - full[2]).mean()
    assert diff < 2.0, f"item 2 alone differs from item 2 of the batch by {diff:.2f} grey levels"
    assert np.abs(alone - full[3]).mean() > 5 * max(diff, 0.5)


@pytest.mark.parametrize("model_sampling", ["v_prediction", "flow"])
def test_graph_helper_model_sampling_and_preview(comfy_server, comfy_graph, model_sampling):
    """The fixture's graph variants other issues rely on: a patched model_sampling and a PreviewImage output."""
    graph = comfy_graph(
        antithetic(seed=71),
        antithetic_sampler("euler_ancestral"),
        batch_size=2,
        steps=2,
        model_sampling=model_sampling,
        save=False,
        extra_nodes={"preview": {"class_type": "PreviewImage", "inputs": {"images": "@image"}}},
    )
    history = comfy_server.run(graph)
    images = comfy_server.images(history, node_id="preview")
    assert len(images) == 2 and images[0].size == (64, 64)


# ------------------------------------------------------------------------------------------ errors


def test_group_size_above_max_rejected(comfy_server, comfy_graph):
    with pytest.raises(ComfyError) as err:
        comfy_server.queue(comfy_graph(antithetic(seed=61, group_size=100000)))
    assert "group_size" in str(err.value)
    assert "value_bigger_than_max" in str(err.value)


def test_sobol_odd_antithetic_rejected_with_our_message(comfy_server, comfy_graph):
    with pytest.raises(ComfyError) as err:
        comfy_server.queue(comfy_graph(sobol(seed=62, points_per_replicate=3, antithetic=True)))
    assert "points_per_replicate must be even" in str(err.value)


def test_sobol_too_many_spectral_coefficients_execution_error(comfy_server, comfy_graph):
    # 64 px -> 8x8 latent: at most 64 coefficients per channel.
    graph = comfy_graph(sobol(seed=63, points_per_replicate=4, mode="spectral", spectral_coefficients=65), steps=STEPS)
    with pytest.raises(ComfyError) as err:
        comfy_server.run(graph)
    data = execution_error(err.value)
    assert data.get("exception_type", "").endswith("ValueError")
    assert "spectral_coefficients must be between 1 and 64" in data.get("exception_message", "")


def test_halves_design_size_too_small_execution_error(comfy_server, comfy_graph):
    graph = comfy_graph(antithetic(seed=64, layout="halves", design_size=2), batch_size=4, steps=STEPS)
    with pytest.raises(ComfyError) as err:
        comfy_server.run(graph)
    assert "design_size 2 is smaller than the largest batch_index 3" in str(err.value)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"points_per_replicate": 10**7}, "points_per_replicate must be between 1 and"),
        ({"spectral_coefficients": 10**7}, "value_bigger_than_max"),
        ({"noise_seed": -1}, "value_smaller_than_min"),
        ({"antithetic": True, "points_per_replicate": 5}, "points_per_replicate must be even"),
    ],
)
def test_sobol_core_validation_covers_every_input(comfy_server, comfy_graph, inputs, expected):
    """validate_inputs names its parameters (no **kwargs), so core keeps validating every other input at /prompt,
    and the two it names are range-checked by the node itself."""
    spec = sobol(seed=65, points_per_replicate=4)
    spec["inputs"].update(inputs)
    with pytest.raises(ComfyError) as err:
        comfy_server.queue(comfy_graph(spec))
    assert expected in str(err.value)
    assert "points_per_replicate" in str(err.value) or next(iter(inputs)) in str(err.value)


def test_sobol_bad_mode_is_named(comfy_server, comfy_graph):
    """A combo value outside the options: newer cores reject it at /prompt (value_not_in_list); 0.3.64 does not
    check V3 combo values at all, so the node's own check names the input when it runs."""
    spec = sobol(seed=66, points_per_replicate=4)
    spec["inputs"]["mode"] = "bogus"
    with pytest.raises(ComfyError) as err:
        comfy_server.run(comfy_graph(spec, steps=STEPS))
    assert "mode" in str(err.value) and ("must be one of" in str(err.value) or "value_not_in_list" in str(err.value))

"""Shrink an example workflow's API copy so it runs on the e2e fixture's tiny SD1.5 checkpoint.

Shared by the e2e and browser tests and ``antithetic-sampling soak``.

What changes, and why each layout still tests what it can:
* every checkpoint name -> ``tiny_sd15.safetensors``; 64 px latents, 2 steps, batch at most 8;
* SD3.5 (``flow_model_antithetic``): ``TripleCLIPLoader`` (three real text encoders) is dropped and its CLIP
  output rewired to the checkpoint's CLIP; ``ModelSamplingSD3`` stays, so the tiny UNet runs the rectified-flow
  (CONST) code path. ComfyUI resizes the all-zero 16-channel ``EmptySD3LatentImage`` to the tiny model's 4
  channels before noise is drawn, so 16-channel noise itself is covered by the noise nodes' unit tests;
* SDXL (``k_antithetic_gallery``): only the checkpoint name and size change; the graph is model-agnostic;
* Sobol RQMC: 2 replicates x 4 points (the CI node's n follows); masks shrink with the image (512 px -> 64).
"""

from __future__ import annotations

import copy

TINY = "tiny_sd15.safetensors"
PX = 64
STEPS = 2
MAX_BATCH = 8
LATENTS = {"EmptyLatentImage", "EmptySD3LatentImage"}
STEP_NODES = {"KSampler", "AntitheticKSampler", "BasicScheduler", "NoiseAwarenessGuidedKSampler", "NoiseShiftProbe"}


def shrink_for_tiny(api: dict, seed_offset: int = 0) -> dict:
    """A copy of ``api`` that runs in a few seconds on the tiny checkpoint (see the module docstring)."""
    g = copy.deepcopy(api)
    ckpt_id = next((nid for nid, n in g.items() if n["class_type"] == "CheckpointLoaderSimple"), None)
    for nid, node in list(g.items()):
        ct, inp = node["class_type"], node["inputs"]
        if ct == "CheckpointLoaderSimple":
            inp["ckpt_name"] = TINY
        elif ct == "TripleCLIPLoader":
            if ckpt_id is None:
                raise ValueError("TripleCLIPLoader without a CheckpointLoaderSimple to take its CLIP from")
            del g[nid]
            for other in g.values():
                for name, value in other["inputs"].items():
                    if isinstance(value, list) and len(value) == 2 and value[0] == nid:
                        other["inputs"][name] = [ckpt_id, 1]
        elif ct in LATENTS:
            inp["width"] = inp["height"] = PX
            inp["batch_size"] = min(int(inp["batch_size"]), MAX_BATCH)
        elif ct == "SolidMask":
            inp["width"] = max(1, int(inp["width"]) * PX // 512)
            inp["height"] = max(1, int(inp["height"]) * PX // 512)
        elif ct == "MaskComposite":
            inp["x"], inp["y"] = int(inp["x"]) * PX // 512, int(inp["y"]) * PX // 512
        elif ct == "SobolRQMCLatentBatch":
            inp["points_per_replicate"] = 4
        elif ct == "NoiseDesignConfidenceInterval" and inp.get("design") == "RQMC replicates":
            inp["group_size"] = 4
        if ct in STEP_NODES and "steps" in inp:
            inp["steps"] = STEPS
        for key in ("seed", "noise_seed"):
            if key in inp and not isinstance(inp[key], list):
                inp[key] = int(inp[key]) + seed_offset
    return g


def output_nodes(api: dict, object_info: dict) -> list[str]:
    """Ids of the nodes ComfyUI executes as outputs (their results land in /history)."""
    return [nid for nid, n in api.items() if object_info.get(n["class_type"], {}).get("output_node")]

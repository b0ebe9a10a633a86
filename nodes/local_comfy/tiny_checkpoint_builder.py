"""Build the tiny random-weight SD1.5 checkpoint the e2e tests and benches run on. Runs in ComfyUI's own Python.

:func:`make_tiny_checkpoint` instantiates ComfyUI's own ``UNetModel`` (model_channels 320, channel_mult [1], one res
block, one transformer block, context 768), ``CLIPTextModel`` (full CLIP-L, the SD1 loader needs it) and ``TAESD``
classes on the ``meta`` device for exact key names and shapes, fills them with seeded random weights (norm scales 1,
biases 0, others N(0, 1/fan_in)), checks with ComfyUI's own model detection that the result loads as SD15, and saves
it: UNet/VAE fp16, CLIP float8_e4m3fn by default (upcast on load).

A script as well as a module, with only the standard library imported at module level (torch and comfy inside
:func:`make_tiny_checkpoint`): :func:`.tiny_checkpoint.ensure_checkpoint` runs
``python nodes/local_comfy/tiny_checkpoint_builder.py OUT.safetensors`` in the ComfyUI Python with the checkout on
``PYTHONPATH`` and caches the result.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from typing import Any

# Bump when the generated checkpoint's content changes (part of the cache file name).
GENERATOR_VERSION = 1

# The UNet that ComfyUI detects as SD15 (model_detection.py: model_channels 320, context 768, no linear
# proj_in, no adm): depth is free, so one level, one res block, one transformer block (25.8 M params).
TINY_UNET_CONFIG: dict[str, Any] = {
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1],
    "channel_mult": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 768,
    "num_heads": 8,
    "num_head_channels": -1,
    "use_spatial_transformer": True,
    "use_linear_in_transformer": False,
    "legacy": False,
    "adm_in_channels": None,
    "use_checkpoint": False,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}


def make_tiny_checkpoint(out: str | os.PathLike, seed: int = 0, clip_dtype: str = "fp8") -> dict[str, Any]:
    """Build the random-weight SD1.5-layout checkpoint. Needs ComfyUI importable (``comfy`` on sys.path).

    Runs in the ComfyUI python (see :func:`ensure_checkpoint`). Returns a small report dict.
    """
    import torch

    torch.set_num_threads(1)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before comfy.model_management is imported: no CUDA probing
    import comfy.clip_model
    import comfy.model_detection
    import comfy.ops
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.taesd.taesd
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from safetensors.torch import save_file

    ops = comfy.ops.disable_weight_init
    with torch.device("meta"):
        unet = UNetModel(dtype=torch.float32, device="meta", operations=ops, **TINY_UNET_CONFIG)
        clip_json = pathlib.Path(comfy.sd1_clip.__file__).with_name("sd1_clip_config.json")
        clip_cfg = json.loads(clip_json.read_text(encoding="utf-8"))
        clip = comfy.clip_model.CLIPTextModel(clip_cfg, torch.float32, "meta", ops)
        taesd = comfy.taesd.taesd.TAESD()

    gen = torch.Generator().manual_seed(seed)
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm)

    def fill(module: torch.nn.Module, prefix: str, dtype: torch.dtype, sd: dict[str, torch.Tensor]) -> None:
        owners = {}
        for mname, mod in module.named_modules():
            for pname, _ in mod.named_parameters(recurse=False):
                owners[f"{mname}.{pname}" if mname else pname] = mod
        for name, p in sorted(module.state_dict().items()):
            shape = tuple(p.shape)
            leaf = name.rsplit(".", 1)[-1]
            mod = owners.get(name)
            if name.endswith("vae_scale"):
                t = torch.ones(shape)
            elif leaf == "bias" or name.endswith("vae_shift"):
                t = torch.zeros(shape)
            elif isinstance(mod, norm_types) and leaf == "weight":
                t = torch.ones(shape)
            else:
                fan_in = 1
                for s in shape[1:]:
                    fan_in *= s
                t = torch.randn(shape, generator=gen) / max(fan_in, 1) ** 0.5
            sd[prefix + name] = t.to(dtype).contiguous()

    sd: dict[str, torch.Tensor] = {}
    fill(unet, "model.diffusion_model.", torch.float16, sd)
    te_dtype = torch.float8_e4m3fn if clip_dtype == "fp8" else torch.float16
    clip_sd: dict[str, torch.Tensor] = {}
    fill(clip, "cond_stage_model.transformer.", torch.float32, clip_sd)
    for k, v in clip_sd.items():
        # The SD1 loader keeps only text_model.*; text_projection is not in SD1.5 checkpoints either.
        if k.startswith("cond_stage_model.transformer.text_model."):
            # Matrices (and embedding tables) in te_dtype; 1-D norm scales and biases stay fp16.
            sd[k] = v.to(te_dtype if v.ndim >= 2 else torch.float16).contiguous()
    fill(taesd, "first_stage_model.", torch.float16, sd)

    # Self-check with ComfyUI's own detection: this must come out as SD15.
    cfg = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    if not isinstance(cfg, comfy.supported_models.SD15):
        raise RuntimeError(f"generated UNet detected as {type(cfg).__name__ if cfg else None}, not SD15")
    generator = "antithetic-sampling nodes/local_comfy/tiny_checkpoint_builder.py"
    save_file(sd, str(out), metadata={"generator": generator, "seed": str(seed)})
    n_params = {
        "unet": sum(v.numel() for k, v in sd.items() if k.startswith("model.")),
        "clip": sum(v.numel() for k, v in sd.items() if k.startswith("cond_stage_model.")),
        "vae": sum(v.numel() for k, v in sd.items() if k.startswith("first_stage_model.")),
    }
    return {"path": str(out), "bytes": os.path.getsize(out), "params": n_params, "detected": type(cfg).__name__}



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="write the tiny SD1.5 checkpoint (run with ComfyUI on sys.path)")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clip-dtype", choices=["fp8", "fp16"], default="fp8")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    report = make_tiny_checkpoint(args.out, seed=args.seed, clip_dtype=args.clip_dtype)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

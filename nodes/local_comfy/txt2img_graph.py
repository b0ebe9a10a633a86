"""API-format txt2img graphs for the tiny checkpoint, built around ``SamplerCustomAdvanced`` (:func:`txt2img_graph`).

The e2e tests (fixture ``comfy_graph``), soak and the benches build their prompts with it; the node ids are the
module constants (``graph[NOISE]["inputs"]["noise_seed"]``).
"""

from __future__ import annotations

import copy

from .paths import CHECKPOINT_NAME

# Node ids used by txt2img_graph (API-format ids may be any string).
CHECKPOINT, POSITIVE, NEGATIVE, LATENT = "checkpoint", "positive", "negative", "latent"
NOISE, SAMPLER, SIGMAS, GUIDER = "noise", "sampler", "sigmas", "guider"
SAMPLE, DECODE, SAVE = "sample", "decode", "save"


def txt2img_graph(
    noise: dict | None = None,
    sampler: dict | str | None = None,
    guider: dict | None = None,
    *,
    seed: int = 0,
    batch_size: int = 4,
    width: int = 64,
    height: int = 64,
    steps: int = 4,
    cfg: float = 4.0,
    scheduler: str = "normal",
    denoise: float = 1.0,
    positive: str = "a photo of a cat",
    negative: str = "blurry",
    model_sampling: str | dict | None = None,
    model_patches: list[dict] | None = None,
    sigmas: dict | None = None,
    latent: dict | None = None,
    extra_nodes: dict[str, dict] | None = None,
    save: bool = True,
    filename_prefix: str = "e2e",
    checkpoint: str = CHECKPOINT_NAME,
) -> dict:
    """A minimal API-format txt2img graph for the tiny checkpoint, built around ``SamplerCustomAdvanced``.

    Default graph (node ids are the module constants, e.g. ``graph["noise"]["inputs"]["noise_seed"]``)::

        checkpoint  CheckpointLoaderSimple(tiny_sd15.safetensors)  -> MODEL 0, CLIP 1, VAE 2
        [model0..]  model_sampling node, then model_patches in order (each takes the previous MODEL)
        positive / negative  CLIPTextEncode
        latent      EmptyLatentImage(width, height, batch_size)
        noise       RandomNoise(noise_seed=seed)            <- ``noise=`` replaces it
        sampler     KSamplerSelect("euler")                 <- ``sampler=`` a name or a node spec
        sigmas      BasicScheduler(scheduler, steps, denoise) <- ``sigmas=``
        guider      CFGGuider(cfg)                          <- ``guider=``
        sample      SamplerCustomAdvanced(noise, guider, sampler, sigmas, latent)
        decode      VAEDecode(sample.0)  ->  save  SaveImage(filename_prefix)   (``save=False`` drops save)

    A *node spec* is ``{"class_type": "...", "inputs": {...}}``. Inside its inputs, these strings become links:
    ``"@model"`` (the final, patched MODEL), ``"@clip"``, ``"@vae"``, ``"@positive"``, ``"@negative"``,
    ``"@latent"``, ``"@noise"``, ``"@sampler"``, ``"@sigmas"``, ``"@guider"``, ``"@samples"`` (sampler output 0)
    and ``"@image"`` (decoded IMAGE). A plain link ``["node_id", index]`` is kept as is.

    * ``noise``: e.g. ``{"class_type": "AntitheticLatentNoise", "inputs": {"noise_seed": 1, "k": 2}}``.
    * ``sampler``: ``"euler_ancestral"`` (-> KSamplerSelect) or a spec such as
      ``{"class_type": "AntitheticSampler", "inputs": {"sampler_name": "euler_ancestral", "k": 2}}``.
    * ``guider``: e.g. ``{"class_type": "MyGuider", "inputs": {"model": "@model", "positive": "@positive",
      "negative": "@negative", "cfg": 3.0}}``.
    * ``model_sampling``: ``"eps"`` | ``"v_prediction"`` | ``"v_prediction_zsnr"`` (ModelSamplingDiscrete) |
      ``"flow"`` (ModelSamplingSD3, shift 3) | a spec with ``"model": "@model"``.
    * ``model_patches``: specs applied after model_sampling; each ``"@model"`` means the previous MODEL.
      They get ids ``model1``, ``model2`` ...
    * ``extra_nodes``: ``{id: spec}`` added as is (``@`` references resolved), e.g. a metrics node on
      ``"@image"`` or a second SaveImage.

    ``save=False`` drops the SaveImage node (``decode`` stays): then add an output node through ``extra_nodes``
    (ComfyUI rejects a prompt without outputs), e.g.
    ``{"preview": {"class_type": "PreviewImage", "inputs": {"images": "@image"}}}``.

    Identical prompts are served from ComfyUI's cache: vary ``seed`` (or a node input) between runs that
    must execute. Returns a new dict each call; edit it freely before ``comfy_server.queue(graph)``.
    """
    g: dict[str, dict] = {}
    refs: dict[str, list] = {}
    g[CHECKPOINT] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}
    refs.update({"@model": [CHECKPOINT, 0], "@clip": [CHECKPOINT, 1], "@vae": [CHECKPOINT, 2]})

    def resolve(spec: dict) -> dict:
        spec = copy.deepcopy(spec)
        spec["inputs"] = {
            k: (list(refs[v]) if isinstance(v, str) and v in refs else v) for k, v in spec.get("inputs", {}).items()
        }
        for k, v in spec["inputs"].items():
            if isinstance(v, str) and v.startswith("@") and v not in refs:
                raise KeyError(f"unknown reference {v!r} in input {k!r} of {spec.get('class_type')}")
        return spec

    if isinstance(model_sampling, str):
        presets = {
            "eps": ("ModelSamplingDiscrete", {"sampling": "eps", "zsnr": False}),
            "v_prediction": ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": False}),
            "v_prediction_zsnr": ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": True}),
            "flow": ("ModelSamplingSD3", {"shift": 3.0}),
        }
        if model_sampling not in presets:
            raise ValueError(f"model_sampling must be one of {sorted(presets)} or a node spec, not {model_sampling!r}")
        cls, inputs = presets[model_sampling]
        model_sampling = {"class_type": cls, "inputs": {"model": "@model", **inputs}}
    for i, spec in enumerate(([model_sampling] if model_sampling else []) + list(model_patches or [])):
        nid = f"model{i}"
        g[nid] = resolve(spec)
        refs["@model"] = [nid, 0]

    g[POSITIVE] = {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": list(refs["@clip"])}}
    g[NEGATIVE] = {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": list(refs["@clip"])}}
    refs.update({"@positive": [POSITIVE, 0], "@negative": [NEGATIVE, 0]})
    g[LATENT] = resolve(
        latent
        or {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch_size}}
    )
    refs["@latent"] = [LATENT, 0]
    g[NOISE] = resolve(noise or {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}})
    if sampler is None or isinstance(sampler, str):
        sampler = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler or "euler"}}
    g[SAMPLER] = resolve(sampler)
    g[SIGMAS] = resolve(
        sigmas
        or {
            "class_type": "BasicScheduler",
            "inputs": {"model": "@model", "scheduler": scheduler, "steps": steps, "denoise": denoise},
        }
    )
    refs.update({"@noise": [NOISE, 0], "@sampler": [SAMPLER, 0], "@sigmas": [SIGMAS, 0]})
    g[GUIDER] = resolve(
        guider
        or {
            "class_type": "CFGGuider",
            "inputs": {"model": "@model", "positive": "@positive", "negative": "@negative", "cfg": cfg},
        }
    )
    refs["@guider"] = [GUIDER, 0]
    g[SAMPLE] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": [NOISE, 0],
            "guider": [GUIDER, 0],
            "sampler": [SAMPLER, 0],
            "sigmas": [SIGMAS, 0],
            "latent_image": [LATENT, 0],
        },
    }
    refs["@samples"] = [SAMPLE, 0]
    # VAEDecode is always there (ComfyUI runs only what an output node needs, so unused it costs nothing).
    g[DECODE] = {"class_type": "VAEDecode", "inputs": {"samples": [SAMPLE, 0], "vae": list(refs["@vae"])}}
    refs["@image"] = [DECODE, 0]
    if save:
        g[SAVE] = {"class_type": "SaveImage", "inputs": {"images": [DECODE, 0], "filename_prefix": filename_prefix}}
    for nid, spec in (extra_nodes or {}).items():
        g[nid] = resolve(spec)
    return g


"""The pack's example workflows (``workflows/*.json``), defined in code and built against ``/object_info``.

Each ``build_<name>(object_info)`` returns a UI-format workflow (what the ComfyUI frontend saves and the
templates browser loads). ``antithetic-sampling sync-workflows --build`` writes them; the API-format copies in
``workflows/api/`` are then converted from the saved UI files, exactly as for a workflow edited by hand.

Model file names are the ones users have (``v1-5-pruned-emaonly.safetensors``, ``sd_xl_base_1.0.safetensors``,
``sd3.5_medium.safetensors`` + the SD3.5 text encoders); every seed is ``fixed`` so a template reproduces the
thumbnail's design.
"""

from __future__ import annotations

from collections.abc import Callable

from .workflow_builder import UIGraph

SD15 = "v1-5-pruned-emaonly.safetensors"
SDXL = "sd_xl_base_1.0.safetensors"
SD35 = "sd3.5_medium.safetensors"
SD35_CLIPS = ("clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors")
NEGATIVE = "blurry, lowres, jpeg artifacts, watermark, text, deformed"
SEED = 20260415

# group colours: shared setup, baseline (independent noise), our designs, the measurements
C_SETUP, C_BASE, C_OURS, C_MEASURE = "#3f789e", "#444444", "#8A5A2B", "#2E6B4F"
# node colours for our nodes (the JS extension uses the same palette per category)
NODE_COLOR, NODE_BG = "#5A3A1A", "#8A5A2B"

COL = 440  # column pitch


def _setup(g: UIGraph, ckpt: str, prompt: str, *, width: int, height: int, batch: int, x: float = 0,
           y: float = 0, sampler: str = "euler", scheduler: str = "normal", steps: int = 20, cfg: float = 7.0,
           latent: str = "EmptyLatentImage", clip=None, model_sampling_shift: float | None = None):
    """Checkpoint, prompts, empty latent, sampler, sigmas, CFG guider: the part every comparison shares."""
    loader = g.add("CheckpointLoaderSimple", (x, y), ckpt_name=ckpt)
    members = [loader]
    model = loader["MODEL"]
    if model_sampling_shift is not None:
        ms = g.add("ModelSamplingSD3", (x, y + 130), model=model, shift=model_sampling_shift)
        model = ms["MODEL"]
        members.append(ms)
    clip_out = clip if clip is not None else loader["CLIP"]
    y_text = y + (230 if model_sampling_shift is not None else 150)
    pos = g.add("CLIPTextEncode", (x, y_text), title="Prompt", size=(400, 170), clip=clip_out, text=prompt)
    neg = g.add("CLIPTextEncode", (x, y_text + 210), title="Negative prompt", size=(400, 110), clip=clip_out,
                text=NEGATIVE)
    empty = g.add(latent, (x, y_text + 360), width=width, height=height, batch_size=batch)
    sel = g.add("KSamplerSelect", (x + COL, y), sampler_name=sampler)
    sched = g.add("BasicScheduler", (x + COL, y + 110), model=model, scheduler=scheduler, steps=steps, denoise=1.0)
    guider = g.add("CFGGuider", (x + COL, y + 260), model=model, positive=pos["CONDITIONING"],
                   negative=neg["CONDITIONING"], cfg=cfg)
    members += [pos, neg, empty, sel, sched, guider]
    return {"loader": loader, "model": model, "pos": pos, "neg": neg, "latent": empty, "sampler": sel,
            "sigmas": sched, "guider": guider, "members": members, "vae": loader["VAE"]}


def _ours(node):
    node.color, node.bgcolor = NODE_COLOR, NODE_BG
    return node


def _sample_decode(g: UIGraph, s: dict, noise, x: float, y: float, *, sampler=None, prefix: str | None,
                   title: str, save_size=(440, 470)):
    """SamplerCustomAdvanced -> VAEDecode -> SaveImage (or PreviewImage when prefix is None)."""
    sca = g.add("SamplerCustomAdvanced", (x, y), title=title, noise=noise,
                guider=s["guider"]["GUIDER"], sampler=sampler if sampler is not None else s["sampler"]["SAMPLER"],
                sigmas=s["sigmas"]["SIGMAS"], latent_image=s["latent"]["LATENT"])
    dec = g.add("VAEDecode", (x, y + 150), samples=sca["output"], vae=s["vae"])
    if prefix is None:
        out = g.add("PreviewImage", (x + 340, y), size=save_size, images=dec["IMAGE"])
    else:
        out = g.add("SaveImage", (x + 340, y), size=save_size, images=dec["IMAGE"], filename_prefix=prefix)
    return sca, dec, out


# ------------------------------------------------------------------------------------------------------------
def build_antithetic_vs_independent(object_info: dict) -> dict:
    g = UIGraph(object_info, name="antithetic_vs_independent")
    s = _setup(g, SD15, "a red fox sitting in a snowy birch forest at golden hour, detailed fur, photograph",
               width=512, height=512, batch=8, steps=20, cfg=7.0, sampler="euler", scheduler="normal")
    g.group("1 · Shared: model, prompt, sampler, steps", s["members"], C_SETUP)

    x = 2 * COL + 40
    rnd = g.add("RandomNoise", (x, 0), noise_seed=SEED)
    ind = _sample_decode(g, s, rnd["NOISE"], x, 120, prefix="antithetic/independent",
                         title="Sample (independent noise)")
    g.group("2 · Baseline: independent noise (core RandomNoise)", [rnd, *ind], C_BASE)

    anti = _ours(g.add("AntitheticLatentNoise", (x, 720), noise_seed=SEED, group_size=2, layout="interleaved"))
    ant = _sample_decode(g, s, anti["NOISE"], x, 900, prefix="antithetic/antithetic",
                         title="Sample (antithetic pairs)")
    g.group("3 · Antithetic pairs: images 1-2, 3-4, ... start from z and -z", [anti, *ant], C_OURS)

    mx = x + 840
    metric = _ours(g.add("PairDiversityMetric", (mx, 420), images=ant[1]["IMAGE"], reference=ind[1]["IMAGE"],
                         **_metric_defaults(object_info, "interleaved pairs")))
    plot = g.add("PreviewImage", (mx + 380, 420), title="Similarity heatmap + per-pair bars", size=(520, 460),
                 images=metric[_first_output(object_info, "PairDiversityMetric", "IMAGE")])
    table = g.add("PreviewAny", (mx, 720), title="Metric table", size=(360, 300),
                  source=metric[_first_output(object_info, "PairDiversityMetric", "STRING")])
    g.group("4 · Diversity: antithetic batch vs the independent batch (reference)", [metric, plot, table],
            C_MEASURE)

    g.note(
        "## Antithetic vs independent noise (SD1.5)\n"
        "Same prompt, model, sampler and seed; only the starting noise differs.\n\n"
        "* **Top row** – 8 images from core *RandomNoise* (independent draws).\n"
        "* **Bottom row** – 8 images from *Antithetic Latent Noise*: images 1-2, 3-4, 5-6, 7-8 start from "
        "**z and -z**. Every image is still an ordinary N(0, I) start, but the two members of a pair come out "
        "far apart (different layout, colours, pose).\n"
        "* **Pair Diversity Metric** compares the antithetic pairs with the same pairs of the independent batch: "
        "pair correlation goes negative, 1-SSIM and the Vendi score go up. The heatmap shows every pair of images.\n\n"
        "Antithetic noise costs nothing extra. Jia et al., *Antithetic Noise in Diffusion Models*, ICLR 2026.",
        (0, -420), (840, 330))
    return g.to_json()


def build_k_antithetic_gallery(object_info: dict) -> dict:
    g = UIGraph(object_info, name="k_antithetic_gallery")
    s = _setup(g, SDXL, "a cozy reading nook with a large window, rainy afternoon, warm lamp light, interior design "
               "photograph", width=1024, height=1024, batch=8, steps=25, cfg=6.5, sampler="dpmpp_2m",
               scheduler="karras")
    g.group("1 · SDXL base: model, prompt, sampler", s["members"], C_SETUP)

    x = 2 * COL + 40
    anti = _ours(g.add("AntitheticLatentNoise", (x, 0), noise_seed=SEED, group_size=4, layout="interleaved"))
    res = _sample_decode(g, s, anti["NOISE"], x, 200, prefix="antithetic/k4_gallery",
                         title="Sample (groups of 4)", save_size=(560, 560))
    g.group("2 · K-antithetic groups: images 1-4 and 5-8, correlation -1/3 inside a group", [anti, *res], C_OURS)

    mx = x + 960
    metric = _ours(g.add("PairDiversityMetric", (mx, 0), images=res[1]["IMAGE"],
                         **_metric_defaults(object_info, "groups of K", group_size=4)))
    plot = g.add("PreviewImage", (mx + 380, 0), title="Similarity heatmap", size=(520, 460),
                 images=metric[_first_output(object_info, "PairDiversityMetric", "IMAGE")])
    table = g.add("PreviewAny", (mx, 330), title="Vendi score and per-group numbers", size=(360, 300),
                  source=metric[_first_output(object_info, "PairDiversityMetric", "STRING")])
    g.group("3 · Gallery diversity (Vendi score: the effective number of distinct images)", [metric, plot, table],
            C_MEASURE)

    g.note(
        "## K-antithetic gallery (SDXL)\n"
        "*Antithetic Latent Noise* with **group size 4**: each group of 4 starts from "
        "sqrt(4/3)(w_i - mean w), so any two members have correlation **-1/3** (the most negative four "
        "exchangeable N(0, I) vectors can have). Every image is still an ordinary N(0, I) start.\n\n"
        "Look at the gallery: inside a group of 4 the compositions spread out instead of repeating.\n"
        "The **Vendi score** is the effective number of distinct images in the batch (1 = all alike, 8 = all "
        "different). To compare, swap the noise node for core *RandomNoise* (same seed) and queue again.\n\n"
        "Jia et al., *Antithetic Noise in Diffusion Models*, ICLR 2026.",
        (0, -420), (840, 330))
    return g.to_json()


def build_sobol_rqmc_estimate(object_info: dict) -> dict:
    g = UIGraph(object_info, name="sobol_rqmc_estimate")
    s = _setup(g, SD15, "a lighthouse on a rocky coast, dramatic sky, oil painting", width=512, height=512,
               batch=32, steps=16, cfg=6.0, sampler="euler", scheduler="normal")
    g.group("1 · Shared: model, prompt, sampler (batch 32 = 4 replicates x 8 points)", s["members"], C_SETUP)

    x = 2 * COL + 40
    sob = _ours(g.add("SobolRQMCLatentBatch", (x, 0), noise_seed=SEED, points_per_replicate=8, mode="auto"))
    rq = _sample_decode(g, s, sob["NOISE"], x, 240, prefix=None, title="Sample (Sobol RQMC)")
    ci_rq = _ours(g.add("NoiseDesignConfidenceInterval", (x + 800, 0), title="CI: RQMC replicates",
                        images=rq[1]["IMAGE"], **_ci_defaults(object_info, "rqmc", 8)))
    rq_plot = g.add("PreviewImage", (x + 1180, 0), title="RQMC: estimate and CI", size=(440, 400),
                    images=ci_rq[_last_output(object_info, "NoiseDesignConfidenceInterval", "IMAGE")])
    rq_txt = g.add("PreviewAny", (x + 800, 420), title="RQMC report", size=(360, 260),
                   source=ci_rq[_first_output(object_info, "NoiseDesignConfidenceInterval", "STRING")])
    g.group("2 · Sobol RQMC: 4 independent scramblings of 8 Sobol points", [sob, *rq, ci_rq, rq_plot, rq_txt],
            C_OURS)

    y2 = 820
    rnd = g.add("RandomNoise", (x, y2), noise_seed=SEED)
    iid = _sample_decode(g, s, rnd["NOISE"], x, y2 + 120, prefix=None, title="Sample (independent noise)")
    ci_iid = g.add("NoiseDesignConfidenceInterval", (x + 800, y2), title="CI: iid",
                   images=iid[1]["IMAGE"], **_ci_defaults(object_info, "iid", 8))
    _ours(ci_iid)
    iid_plot = g.add("PreviewImage", (x + 1180, y2), title="iid: estimate and CI", size=(440, 400),
                     images=ci_iid[_last_output(object_info, "NoiseDesignConfidenceInterval", "IMAGE")])
    iid_txt = g.add("PreviewAny", (x + 800, y2 + 420), title="iid report", size=(360, 260),
                    source=ci_iid[_first_output(object_info, "NoiseDesignConfidenceInterval", "STRING")])
    g.group("3 · Baseline: 32 independent images, the usual t-interval", [rnd, *iid, ci_iid, iid_plot, iid_txt],
            C_BASE)

    g.note(
        "## Estimating a batch statistic with Sobol RQMC noise\n"
        "Goal: the **average brightness** this prompt produces (any per-image number works the same way).\n\n"
        "* *Sobol RQMC Latent Batch* spreads 8 starting noises evenly (scrambled Sobol points through the "
        "normal inverse CDF) and repeats that with 4 independent scramblings. Each replicate mean is unbiased; "
        "the CI uses the 4 replicate means (Student-t, 3 degrees of freedom).\n"
        "* The iid branch uses 32 independent images and the usual interval.\n\n"
        "Compare the **half-widths** in the two reports: same number of images, and the RQMC interval is "
        "usually narrower. The design inputs of each CI node must match the noise node.\n\n"
        "Jia et al., *Antithetic Noise in Diffusion Models*, ICLR 2026 (RQMC extension: see README).",
        (0, -440), (840, 350))
    return g.to_json()


def build_flow_model_antithetic(object_info: dict) -> dict:
    g = UIGraph(object_info, name="flow_model_antithetic")
    clip = g.add("TripleCLIPLoader", (0, 820), title="SD3.5 text encoders", clip_name1=SD35_CLIPS[0],
                 clip_name2=SD35_CLIPS[1], clip_name3=SD35_CLIPS[2])
    s = _setup(g, SD35, "a glass terrarium with a tiny waterfall and moss, macro photograph, soft daylight",
               width=1024, height=1024, batch=4, steps=28, cfg=4.5, sampler="euler", scheduler="sgm_uniform",
               latent="EmptySD3LatentImage", clip=clip["CLIP"], model_sampling_shift=3.0)
    g.group("1 · SD3.5 medium (rectified flow): model, text encoders, prompt", [*s["members"], clip], C_SETUP)

    x = 2 * COL + 40
    anti = _ours(g.add("AntitheticLatentNoise", (x, 0), noise_seed=SEED, group_size=2, layout="interleaved"))
    res = _sample_decode(g, s, anti["NOISE"], x, 200, prefix="antithetic/flow_pairs", title="Sample (flow, pairs)",
                         save_size=(560, 560))
    g.group("2 · Antithetic pairs on a 16-channel flow latent", [anti, *res], C_OURS)

    mx = x + 960
    metric = _ours(g.add("PairDiversityMetric", (mx, 0), images=res[1]["IMAGE"],
                         **_metric_defaults(object_info, "interleaved pairs")))
    table = g.add("PreviewAny", (mx, 330), title="Pair metrics", size=(360, 300),
                  source=metric[_first_output(object_info, "PairDiversityMetric", "STRING")])
    plot = g.add("PreviewImage", (mx + 380, 0), title="Similarity heatmap", size=(520, 460),
                 images=metric[_first_output(object_info, "PairDiversityMetric", "IMAGE")])
    g.group("3 · Pair diversity", [metric, plot, table], C_MEASURE)

    g.note(
        "## Antithetic pairs with a flow model (SD3.5 medium)\n"
        "Flow models (SD3/SD3.5, Flux) start from pure noise too, so antithetic starts work unchanged: the "
        "16-channel latent of *EmptySD3LatentImage* gets pairs z, -z (images 1-2 and 3-4).\n\n"
        "*ModelSamplingSD3* (shift 3) sets the flow schedule; *euler* + *sgm_uniform* is deterministic, so the "
        "pairing holds all the way. With Flux use the Flux loaders and *EmptySD3LatentImage* the same way.\n\n"
        "Model files: `sd3.5_medium.safetensors` in models/checkpoints; `clip_l`, `clip_g` and `t5xxl_fp16` "
        "(or `t5xxl_fp8_e4m3fn`) in models/text_encoders.",
        (0, -420), (840, 330))
    return g.to_json()


def build_partial_antithetic_ancestral(object_info: dict) -> dict:
    g = UIGraph(object_info, name="partial_antithetic_ancestral")
    s = _setup(g, SD15, "a portrait of an astronaut in a flower field, detailed, soft light", width=512,
               height=512, batch=4, steps=24, cfg=7.0, sampler="euler_ancestral", scheduler="normal")
    g.group("1 · Shared: model, prompt, steps", s["members"], C_SETUP)

    x = 2 * COL + 40
    base = g.add("SolidMask", (x, 0), title="Mask: empty canvas", value=0.0, width=512, height=512)
    half = g.add("SolidMask", (x, 130), title="Mask: right half", value=1.0, width=256, height=512)
    comp = g.add("MaskComposite", (x, 260), destination=base["MASK"], source=half["MASK"], x=256, y=0,
                 operation="add")
    prev = g.add("MaskPreview", (x + 340, 0), size=(260, 300), mask=comp["MASK"])
    g.group("2 · Where the pair may differ (white = antithetic)", [base, half, comp, prev], C_SETUP)

    y = 520
    anti = _ours(g.add("AntitheticLatentNoise", (x, y), noise_seed=SEED, group_size=2, layout="interleaved",
                       mask=comp["MASK"]))
    mirrored = _ours(g.add("AntitheticSampler", (x, y + 220), sampler_name="euler_ancestral", group_size=2,
                           layout="interleaved", mask=comp["MASK"]))
    res = _sample_decode(g, s, anti["NOISE"], x + 420, y, sampler=mirrored["SAMPLER"],
                         prefix="antithetic/partial_mirrored", title="Sample (mirrored step noise)")
    g.group("3 · Masked antithetic pair + mirrored step noise (euler_ancestral)", [anti, mirrored, *res], C_OURS)

    y2 = y + 560
    plain = _sample_decode(g, s, anti["NOISE"], x + 420, y2, prefix="antithetic/partial_plain_ancestral",
                           title="Sample (ordinary euler_ancestral)")
    g.group("4 · Same start, ordinary ancestral sampler (step noise not mirrored)", list(plain), C_BASE)

    mx = x + 1240
    metric = _ours(g.add("PairDiversityMetric", (mx, y), images=res[1]["IMAGE"], reference=plain[1]["IMAGE"],
                         **_metric_defaults(object_info, "interleaved pairs")))
    table = g.add("PreviewAny", (mx, y + 330), title="Pair metrics (reference = not mirrored)", size=(360, 300),
                  source=metric[_first_output(object_info, "PairDiversityMetric", "STRING")])
    g.group("5 · Pair diversity: mirrored vs not mirrored", [metric, table], C_MEASURE)

    g.note(
        "## Partial antithetic pair + ancestral sampler (SD1.5)\n"
        "* The **mask** (right half) limits the antithetic negation: outside it both images of a pair share the "
        "same noise, inside it they get z and -z. The left half stays (nearly) the same, the right half varies.\n"
        "* Ancestral samplers add fresh noise at every step, which makes the pair independent again. "
        "*Antithetic Sampler* mirrors that step noise inside the same mask, so the pair stays anti-correlated "
        "(top). The bottom branch uses plain *euler_ancestral* from the same start for comparison.\n"
        "* The metric uses the unmirrored branch as reference: pair correlation is lower with mirroring.\n\n"
        "Use the same group size, layout and mask on the noise node and the sampler node.",
        (0, -440), (840, 350))
    return g.to_json()


def build_nag_guided_ksampler(object_info: dict) -> dict:
    g = UIGraph(object_info, name="nag_guided_ksampler")
    ckpt = g.add("CheckpointLoaderSimple", (0, 0), ckpt_name=SD15)
    pos = g.add("CLIPTextEncode", (0, 150), title="Prompt", size=(400, 170), clip=ckpt["CLIP"],
                text="a bowl of ramen on a wooden table, steam, food photography, shallow depth of field")
    neg = g.add("CLIPTextEncode", (0, 360), title="Negative prompt", size=(400, 110), clip=ckpt["CLIP"],
                text=NEGATIVE)
    empty = g.add("EmptyLatentImage", (0, 510), width=512, height=512, batch_size=2)
    g.group("1 · Shared: model, prompt, latent", [ckpt, pos, neg, empty], C_SETUP)

    x = COL + 40
    common = {"seed": SEED, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    off = g.add("KSampler", (x, 0), title="KSampler (guidance off)", model=ckpt["MODEL"], positive=pos["CONDITIONING"],
                negative=neg["CONDITIONING"], latent_image=empty["LATENT"], **common)
    dec_off = g.add("VAEDecode", (x + 340, 0), samples=off["LATENT"], vae=ckpt["VAE"])
    save_off = g.add("SaveImage", (x + 680, 0), size=(440, 470), images=dec_off["IMAGE"],
                     filename_prefix="antithetic/guidance_off")
    g.group("2 · Core KSampler (no noise-awareness guidance)", [off, dec_off, save_off], C_BASE)

    y = 560
    on = _ours(g.add("NoiseAwarenessGuidedKSampler", (x, y), title="NAG Guided KSampler (guidance on)",
                     model=ckpt["MODEL"], positive=pos["CONDITIONING"], negative=neg["CONDITIONING"],
                     latent_image=empty["LATENT"], **_guided_defaults(object_info, common)))
    dec_on = g.add("VAEDecode", (x + 340, y), samples=on[0], vae=ckpt["VAE"])
    save_on = g.add("SaveImage", (x + 680, y), size=(440, 470), images=dec_on["IMAGE"],
                    filename_prefix="antithetic/guidance_on")
    g.group("3 · Noise Awareness Guidance on (same seed)", [on, dec_on, save_on], C_OURS)

    y2 = 1140
    probe = _ours(g.add("NoiseShiftProbe", (x, y2), **_probe_inputs(object_info, ckpt, pos, neg, empty, common)))
    plot = g.add("PreviewImage", (x + 400, y2), title="Noise shift per step", size=(520, 420),
                 images=probe[_first_output(object_info, "NoiseShiftProbe", "IMAGE")])
    nums = g.add("PreviewAny", (x + 940, y2), title="sigma-hat / sigma per step", size=(360, 300),
                 source=probe[_first_output(object_info, "NoiseShiftProbe", "STRING")])
    g.group("4 · Noise-shift probe: does this model and sampler drift at all?", [probe, plot, nums], C_MEASURE)

    g.note(
        "## Noise Awareness Guidance (training-free, after Zhong et al., ICLR 2026)\n"
        "During sampling the image often carries a different amount of noise than the schedule assumes "
        "(*noise shift*). The guided KSampler nudges each step back towards the nominal noise level.\n\n"
        "* Rows 2 and 3 use the **same seed, steps and cfg**: compare fine detail and contrast.\n"
        "* The **probe** plots the estimated noise level divided by the nominal one at every step "
        "(1.0 = no shift). If the curve stays near 1, the guidance has little to fix on this model.\n"
        "* scale 0 gives exactly the core KSampler. Not related to Normalized Attention Guidance.",
        (0, -420), (840, 330))
    return g.to_json()


# ------------------------------------------------------------------------------------------------------------
# Inputs of the nodes other engineers own, chosen from object_info so the workflows follow their definitions.

def _options(object_info: dict, cls: str, name: str) -> list:
    info = object_info[cls]["input"]
    for section in ("required", "optional"):
        spec = (info.get(section) or {}).get(name)
        if spec is not None:
            typ = spec[0]
            if isinstance(typ, list):
                return typ
            if typ == "COMBO":
                return list(spec[1].get("options") or [])
            return []
    return []


def _has_input(object_info: dict, cls: str, name: str) -> bool:
    info = object_info[cls]["input"]
    return any(name in (info.get(s) or {}) for s in ("required", "optional"))


def _pick(options: list, *wanted: str) -> str | None:
    for w in wanted:
        for o in options:
            if str(o).lower() == w.lower():
                return o
    for w in wanted:
        for o in options:
            if w.lower() in str(o).lower():
                return o
    return None


def _first_output(object_info: dict, cls: str, typ: str) -> int:
    outs = object_info[cls]["output"]
    for i, t in enumerate(outs):
        if t == typ:
            return i
    raise KeyError(f"{cls} has no {typ} output (outputs: {outs})")


def _last_output(object_info: dict, cls: str, typ: str) -> int:
    outs = object_info[cls]["output"]
    for i in range(len(outs) - 1, -1, -1):
        if outs[i] == typ:
            return i
    raise KeyError(f"{cls} has no {typ} output (outputs: {outs})")


def _metric_defaults(object_info: dict, pairing: str, group_size: int | None = None) -> dict:
    cls = "PairDiversityMetric"
    out: dict = {}
    for name in ("pairing", "design", "layout"):
        opts = _options(object_info, cls, name)
        if opts:
            key = pairing.split()[0]
            choice = _pick(opts, pairing, key) or opts[0]
            out[name] = choice
            break
    if group_size is not None:
        for name in ("group_size", "k", "K"):
            if _has_input(object_info, cls, name):
                out[name] = group_size
                break
    return out


def _ci_defaults(object_info: dict, design: str, n: int) -> dict:
    cls = "NoiseDesignConfidenceInterval"
    out: dict = {}
    opts = _options(object_info, cls, "design")
    if opts:
        out["design"] = _pick(opts, "RQMC replicates", "rqmc") if design == "rqmc" else _pick(opts, "iid")
    for name in ("points_per_replicate", "n_per_replicate", "replicate_size"):
        if _has_input(object_info, cls, name):
            out[name] = n
            break
    sopts = _options(object_info, cls, "statistic")
    if sopts:
        out["statistic"] = _pick(sopts, "mean brightness", "brightness") or sopts[0]
    return out


def _guided_defaults(object_info: dict, common: dict) -> dict:
    cls = "NoiseAwarenessGuidedKSampler"
    return {k: v for k, v in common.items() if _has_input(object_info, cls, k)}


def _probe_inputs(object_info: dict, ckpt, pos, neg, empty, common: dict) -> dict:
    """Wire the probe's sockets by type (model / conditioning / latent) and copy the sampling widgets."""
    cls = "NoiseShiftProbe"
    info = object_info[cls]["input"]
    out: dict = {}
    for section in ("required", "optional"):
        for name, spec in (info.get(section) or {}).items():
            typ = spec[0]
            if typ == "MODEL":
                out[name] = ckpt["MODEL"]
            elif typ == "CONDITIONING":
                out[name] = neg["CONDITIONING"] if "neg" in name else pos["CONDITIONING"]
            elif typ == "LATENT":
                out[name] = empty["LATENT"]
            elif name in common:
                out[name] = common[name]
    return out


BUILDERS: dict[str, Callable[[dict], dict]] = {
    "antithetic_vs_independent": build_antithetic_vs_independent,
    "k_antithetic_gallery": build_k_antithetic_gallery,
    "sobol_rqmc_estimate": build_sobol_rqmc_estimate,
    "nag_guided_ksampler": build_nag_guided_ksampler,
    "flow_model_antithetic": build_flow_model_antithetic,
    "partial_antithetic_ancestral": build_partial_antithetic_ancestral,
}

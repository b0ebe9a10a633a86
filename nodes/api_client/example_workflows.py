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
# node colours of our nodes by category (antithetic/<leaf>): the same palette js/antithetic_sampling.js gives
# pack nodes added by hand
CATEGORY_COLORS = {
    "noise": ("#5A3A1A", "#8A5A2B"),
    "sampling": ("#5A3A1A", "#8A5A2B"),
    "guidance": ("#2A3F5A", "#3D5A80"),
    "metrics": ("#1F4A37", "#2E6B4F"),
}

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


def _ours(g: UIGraph, node):
    leaf = g.object_info[node.type].get("category", "").split("/")[-1]
    node.color, node.bgcolor = CATEGORY_COLORS[leaf]
    return node


def _sample_decode(g: UIGraph, s: dict, noise, x: float, y: float, *, sampler=None, prefix: str | None,
                   title: str, save_size=(440, 470)):
    """SamplerCustomAdvanced -> VAEDecode -> SaveImage (or PreviewImage when prefix is None)."""
    sca = g.add("SamplerCustomAdvanced", (x, y), title=title, noise=noise,
                guider=s["guider"]["GUIDER"], sampler=sampler if sampler is not None else s["sampler"]["SAMPLER"],
                sigmas=s["sigmas"]["SIGMAS"], latent_image=s["latent"]["LATENT"])
    dec = g.add("VAEDecode", (x, y + 150), samples=sca["output"], vae=s["vae"])
    out_x = x + max(340, sca.size[0] + 40)  # a long title widens the sampler node
    if prefix is None:
        out = g.add("PreviewImage", (out_x, y), size=save_size, images=dec["IMAGE"])
    else:
        out = g.add("SaveImage", (out_x, y), size=save_size, images=dec["IMAGE"], filename_prefix=prefix)
    return sca, dec, out


# Output slots of our nodes (V3 outputs are addressed by index; their slot names are the type names).
METRIC_REPORT, METRIC_PLOT = 6, 7
CI_REPORT, CI_MEAN, CI_WIDTH, CI_PLOT = 4, 5, 6, 7
PROBE_PLOT, PROBE_NUMBERS, PROBE_LATENT = 0, 1, 2
METRIC_SIZE = (460, 660)  # room for the plot preview and the summary panel the JS extension adds
CI_SIZE = (460, 700)


def _metric(g: UIGraph, pos, images, *, reference=None, pairing="interleaved", group_size=2, title=None):
    kwargs = {"images": images, "pairing": pairing, "group_size": group_size}
    if reference is not None:
        kwargs["reference"] = reference
    return _ours(g, g.add("PairDiversityMetric", pos, title=title, size=METRIC_SIZE, **kwargs))


def _ci(g: UIGraph, pos, images, *, design: str, group_size: int = 2, title=None):
    return _ours(g, g.add("NoiseDesignConfidenceInterval", pos, title=title, size=CI_SIZE, images=images,
                          design=design, group_size=group_size, layout="interleaved", statistic="mean brightness",
                          confidence=0.95))


# ------------------------------------------------------------------------------------------------------------
def build_antithetic_vs_independent(object_info: dict) -> dict:
    """The KSampler user's path: core KSampler next to Antithetic KSampler, same widgets, and the pair metric."""
    g = UIGraph(object_info, name="antithetic_vs_independent")
    ckpt = g.add("CheckpointLoaderSimple", (0, 0), ckpt_name=SD15)
    pos = g.add("CLIPTextEncode", (0, 150), title="Prompt", size=(400, 170), clip=ckpt["CLIP"],
                text="a red fox sitting in a snowy birch forest at golden hour, detailed fur, photograph")
    neg = g.add("CLIPTextEncode", (0, 360), title="Negative prompt", size=(400, 110), clip=ckpt["CLIP"],
                text=NEGATIVE)
    empty = g.add("EmptyLatentImage", (0, 510), width=512, height=512, batch_size=8)
    g.group("1 · Shared: model, prompt, batch 8", [ckpt, pos, neg, empty], C_SETUP)

    x = COL + 60
    common = {"model": ckpt["MODEL"], "positive": pos["CONDITIONING"], "negative": neg["CONDITIONING"],
              "latent_image": empty["LATENT"], "seed": SEED, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
              "scheduler": "normal", "denoise": 1.0}
    ind = g.add("KSampler", (x, 0), title="KSampler (independent noise)", **common)
    dec_ind = g.add("VAEDecode", (x + 380, 0), samples=ind["LATENT"], vae=ckpt["VAE"])
    save_ind = g.add("SaveImage", (x + 720, 0), size=(440, 470), images=dec_ind["IMAGE"],
                     filename_prefix="antithetic/independent")
    g.group("2 · Baseline: core KSampler (independent noise)", [ind, dec_ind, save_ind], C_BASE)

    y = 610
    anti = _ours(g, g.add("AntitheticKSampler", (x, y), title="Antithetic KSampler (pairs)",
                          group_size=2, layout="interleaved", **common))
    dec_anti = g.add("VAEDecode", (x + 380, y), samples=anti["LATENT"], vae=ckpt["VAE"])
    save_anti = g.add("SaveImage", (x + 720, y), size=(440, 470), images=dec_anti["IMAGE"],
                      filename_prefix="antithetic/antithetic")
    g.group("3 · Antithetic KSampler: images 1-2, 3-4, ... start from z and -z", [anti, dec_anti, save_anti],
            C_OURS)

    mx = x + 720 + 440 + 80
    metric = _metric(g, (mx, 0), dec_anti["IMAGE"], reference=dec_ind["IMAGE"], pairing="interleaved",
                     title="Pair Diversity Metric (reference = independent batch)")
    table = g.add("PreviewAny", (mx, 720), title="Full report (markdown)", size=(460, 380),
                  source=metric[METRIC_REPORT])
    g.group("4 · Diversity vs the independent batch", [metric, table], C_MEASURE)

    g.note(
        "## Antithetic vs independent noise (SD1.5)\n"
        "Same prompt, model, sampler, seed and steps; only the starting noise differs.\n\n"
        "* **Group 2**: 8 images from core *KSampler* (independent noise).\n"
        "* **Group 3**: *Antithetic KSampler*, a drop-in for KSampler (same inputs and widgets, plus group size and "
        "layout): images 1-2, 3-4, 5-6, 7-8 start from **z and -z**. Every image is still an ordinary N(0, I) "
        "start, but the two members of a pair come out far apart (layout, colours, pose). With an ancestral or SDE "
        "sampler it mirrors the noise of every step too. To use it in your own graph, swap your KSampler for it.\n"
        "* **Group 4**: *Pair Diversity Metric* measures the antithetic pairs and, as reference, the same pairs of "
        "the independent batch. Pair correlation drops (negative is typical) and 1 - SSIM goes up. The Vendi score "
        "of the whole batch need not rise: a pair adds contrast inside the pair, not more independent draws. "
        "The summary appears in the node after the run; its plot shows every pair as a dot (top left = the "
        "two images differ more, grey = the independent pairs).\n\n"
        "Antithetic noise costs nothing extra. Jia et al., *Antithetic Noise in Diffusion Models*, ICLR 2026.",
        (0, -470), (900, 360))
    return g.to_json()


def build_k_antithetic_gallery(object_info: dict) -> dict:
    g = UIGraph(object_info, name="k_antithetic_gallery")
    s = _setup(g, SDXL, "a cozy reading nook with a large window, rainy afternoon, warm lamp light, interior design "
               "photograph", width=1024, height=1024, batch=8, steps=25, cfg=6.5, sampler="dpmpp_2m",
               scheduler="karras")
    g.group("1 · SDXL base: model, prompt, sampler", s["members"], C_SETUP)

    x = 2 * COL + 60
    anti = _ours(g, g.add("AntitheticLatentNoise", (x, 0), size=(330, 154), noise_seed=SEED, group_size=4,
                          layout="interleaved"))
    res = _sample_decode(g, s, anti["NOISE"], x, 200, prefix="antithetic/k4_gallery",
                         title="Sample (groups of 4)", save_size=(600, 600))
    g.group("2 · K-antithetic groups: images 1-4 and 5-8, correlation -1/3 inside a group", [anti, *res], C_OURS)

    mx = x + 1020
    metric = _metric(g, (mx, 0), res[1]["IMAGE"], pairing="groups of K", group_size=4,
                     title="Pair Diversity Metric (groups of 4)")
    g.group("3 · Gallery diversity (Vendi score)", [metric], C_MEASURE)

    g.note(
        "## K-antithetic gallery (SDXL)\n"
        "*Antithetic Latent Noise* with **group size 4**: each group of 4 starts from sqrt(4/3)(w_i - mean w), so "
        "any two members have correlation **-1/3**, the most negative that four exchangeable N(0, I) starts can "
        "have. Every image is still an ordinary N(0, I) start.\n\n"
        "Look at the gallery: inside a group of 4 the compositions spread out instead of repeating.\n"
        "The **Vendi score** (in the metric node after the run) is the effective number of distinct images in the "
        "batch: 1 = all alike, 8 = all different. To compare, swap the noise node for core *RandomNoise* (same "
        "seed) and queue again.\n\n"
        "Jia et al., *Antithetic Noise in Diffusion Models*, ICLR 2026.",
        (0, -470), (900, 360))
    return g.to_json()


def build_sobol_rqmc_estimate(object_info: dict) -> dict:
    g = UIGraph(object_info, name="sobol_rqmc_estimate")
    s = _setup(g, SD15, "a lighthouse on a rocky coast, dramatic sky, oil painting", width=512, height=512,
               batch=32, steps=16, cfg=6.0, sampler="euler", scheduler="normal")
    g.group("1 · Shared: model, prompt, sampler (batch 32 = 4 replicates x 8 points)", s["members"], C_SETUP)

    x = 2 * COL + 60
    sob = _ours(g, g.add("SobolRQMCLatentBatch", (x, 0), noise_seed=SEED, points_per_replicate=8,
                         mode="auto", spectral_coefficients=64, antithetic=False))
    rq = _sample_decode(g, s, sob["NOISE"], x, 240, prefix=None, title="Sample (Sobol RQMC)")
    ci_rq = _ci(g, (x + 860, 0), rq[1]["IMAGE"], design="RQMC replicates", group_size=8,
                title="Confidence Interval: RQMC replicates (n = 8)")
    g.group("2 · Sobol RQMC: 4 independent scramblings of 8 Sobol points", [sob, *rq, ci_rq], C_OURS)

    y2 = 840
    rnd = g.add("RandomNoise", (x, y2), noise_seed=SEED)
    iid = _sample_decode(g, s, rnd["NOISE"], x, y2 + 120, prefix=None, title="Sample (independent noise)")
    ci_iid = _ci(g, (x + 860, y2), iid[1]["IMAGE"], design="iid", title="Confidence Interval: iid")
    g.group("3 · Baseline: 32 independent images, the usual t-interval", [rnd, *iid, ci_iid], C_BASE)

    g.note(
        "## Estimating a batch statistic with Sobol RQMC noise\n"
        "Goal: the **average brightness** this prompt produces (any per-image number works the same way).\n\n"
        "* *Sobol RQMC Latent Batch* spreads 8 starting noises evenly (scrambled Sobol points through the inverse "
        "normal CDF) and repeats that with 4 independent scramblings. Each replicate mean is unbiased; the interval "
        "uses the 4 replicate means (Student-t, 3 degrees of freedom).\n"
        "* The iid branch uses 32 independent images and the usual interval.\n\n"
        "After the run, compare the **half-widths** shown in the two interval nodes: same number of images, and the "
        "RQMC interval is usually narrower. The design inputs of each interval node must match its noise node "
        "(the badge turns red when they do not).\n\n"
        "After Jia et al., *Antithetic Noise in Diffusion Models*, ICLR 2026 (RQMC construction: see the README).",
        (0, -490), (900, 380))
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

    x = COL + 60
    common = {"seed": SEED, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    off = g.add("KSampler", (x, 0), title="KSampler (guidance off)", model=ckpt["MODEL"], positive=pos["CONDITIONING"],
                negative=neg["CONDITIONING"], latent_image=empty["LATENT"], **common)
    dec_off = g.add("VAEDecode", (x + 360, 0), samples=off["LATENT"], vae=ckpt["VAE"])
    save_off = g.add("SaveImage", (x + 700, 0), size=(440, 470), images=dec_off["IMAGE"],
                     filename_prefix="antithetic/guidance_off")
    g.group("2 · Core KSampler: no noise-awareness guidance", [off, dec_off, save_off], C_BASE)

    y = 610
    on = _ours(g, g.add("NoiseAwarenessGuidedKSampler", (x, y), title="NAG Guided KSampler (guidance on)",
                        size=(340, 410), model=ckpt["MODEL"], positive=pos["CONDITIONING"],
                        negative=neg["CONDITIONING"], latent_image=empty["LATENT"], awareness_scale=1.0, **common))
    dec_on = g.add("VAEDecode", (x + 360, y), samples=on["LATENT"], vae=ckpt["VAE"])
    save_on = g.add("SaveImage", (x + 700, y), size=(440, 470), images=dec_on["IMAGE"],
                    filename_prefix="antithetic/guidance_on")
    g.group("3 · Noise Awareness Guidance on (same seed, steps, cfg)", [on, dec_on, save_on], C_OURS)

    y2 = 1220
    probe = _ours(g, g.add("NoiseShiftProbe", (x, y2), title="Noise Shift Probe (measure only: scale 0)",
                           size=(340, 410), model=ckpt["MODEL"], positive=pos["CONDITIONING"],
                           negative=neg["CONDITIONING"], latent_image=empty["LATENT"], awareness_scale=0.0, **common))
    plot = g.add("PreviewImage", (x + 360, y2), title="sigma-hat / sigma per step", size=(560, 440),
                 images=probe[PROBE_PLOT])
    nums = g.add("PreviewAny", (x + 940, y2), title="Probe numbers (JSON)", size=(360, 440),
                 source=probe[PROBE_NUMBERS])
    g.group("4 · Noise-shift probe: does this model and sampler drift at all?", [probe, plot, nums], C_MEASURE)

    g.note(
        "## Noise Awareness Guidance (training-free, after Zhong et al., ICLR 2026)\n"
        "During sampling an image often carries more noise than the schedule assumes at that step (*noise "
        "shift*). The guided KSampler estimates the actual level and, inside a sigma band, steers each step back "
        "towards the nominal one.\n\n"
        "* Groups 2 and 3 use the **same seed, steps and cfg**: compare fine detail and contrast.\n"
        "* The **probe** (group 4) plots the estimated noise level divided by the nominal one at every step "
        "(1.0 = no shift). If the curve stays near 1, the guidance has little to fix on this model; set its "
        "awareness_scale to 1.0 to see the guided curve.\n"
        "* awareness_scale 0 gives exactly the core KSampler. Not related to Normalized Attention Guidance.",
        (0, -470), (900, 360))
    return g.to_json()


def build_flow_model_antithetic(object_info: dict) -> dict:
    g = UIGraph(object_info, name="flow_model_antithetic")
    clip = g.add("TripleCLIPLoader", (0, 900), title="SD3.5 text encoders", clip_name1=SD35_CLIPS[0],
                 clip_name2=SD35_CLIPS[1], clip_name3=SD35_CLIPS[2])
    s = _setup(g, SD35, "a glass terrarium with a tiny waterfall and moss, macro photograph, soft daylight",
               width=1024, height=1024, batch=4, steps=28, cfg=4.5, sampler="euler", scheduler="sgm_uniform",
               latent="EmptySD3LatentImage", clip=clip["CLIP"], model_sampling_shift=3.0)
    g.group("1 · SD3.5 medium (rectified flow): model, text encoders, prompt", [*s["members"], clip], C_SETUP)

    x = 2 * COL + 60
    anti = _ours(g, g.add("AntitheticLatentNoise", (x, 0), size=(330, 154), noise_seed=SEED, group_size=2,
                          layout="interleaved"))
    res = _sample_decode(g, s, anti["NOISE"], x, 200, prefix="antithetic/flow_pairs", title="Sample (flow, pairs)",
                         save_size=(600, 600))
    g.group("2 · Antithetic pairs on a 16-channel flow latent", [anti, *res], C_OURS)

    mx = x + 1020
    metric = _metric(g, (mx, 0), res[1]["IMAGE"], pairing="interleaved", title="Pair Diversity Metric (pairs)")
    g.group("3 · Pair diversity", [metric], C_MEASURE)

    g.note(
        "## Antithetic pairs with a flow model (SD3.5 medium)\n"
        "Flow models (SD3/SD3.5, Flux) start from pure noise too, so antithetic starts work unchanged: the "
        "16-channel latent of *EmptySD3LatentImage* gets pairs z, -z (images 1-2 and 3-4).\n\n"
        "*ModelSamplingSD3* (shift 3) sets the flow schedule; *euler* + *sgm_uniform* is deterministic, so the pairing "
        "holds all the way. For Flux, load the Flux model and text encoders instead; the noise node is the same.\n\n"
        "Model files: `sd3.5_medium.safetensors` in models/checkpoints; `clip_l`, `clip_g` and `t5xxl_fp16` (or "
        "`t5xxl_fp8_e4m3fn`) in models/text_encoders.",
        (0, -470), (900, 360))
    return g.to_json()


def build_partial_antithetic_ancestral(object_info: dict) -> dict:
    g = UIGraph(object_info, name="partial_antithetic_ancestral")
    s = _setup(g, SD15, "a portrait of an astronaut in a flower field, detailed, soft light", width=512,
               height=512, batch=4, steps=24, cfg=7.0, sampler="euler_ancestral", scheduler="normal")
    g.group("1 · Shared: model, prompt, steps", s["members"], C_SETUP)

    x = 2 * COL + 60
    base = g.add("SolidMask", (x, 0), title="Mask: empty canvas", value=0.0, width=512, height=512)
    half = g.add("SolidMask", (x, 140), title="Mask: right half", value=1.0, width=256, height=512)
    comp = g.add("MaskComposite", (x, 280), destination=base["MASK"], source=half["MASK"], x=256, y=0,
                 operation="add")
    prev = g.add("MaskPreview", (x + 340, 0), size=(300, 320), mask=comp["MASK"])
    g.group("2 · Where the pair may differ (white = antithetic)", [base, half, comp, prev], C_SETUP)

    y = 560
    anti = _ours(g, g.add("AntitheticLatentNoise", (x, y), size=(330, 154), noise_seed=SEED, group_size=2,
                          layout="interleaved", mask=comp["MASK"]))
    mirrored = _ours(g, g.add("AntitheticSampler", (x, y + 220), size=(330, 130), sampler_name="euler_ancestral",
                              group_size=2, layout="interleaved", mask=comp["MASK"]))
    res = _sample_decode(g, s, anti["NOISE"], x + 380, y, sampler=mirrored["SAMPLER"],
                         prefix="antithetic/partial_mirrored", title="Sample (mirrored step noise)")
    g.group("3 · Masked antithetic pair + mirrored step noise (euler_ancestral)", [anti, mirrored, *res], C_OURS)

    y2 = y + 620
    plain = _sample_decode(g, s, anti["NOISE"], x + 380, y2, prefix="antithetic/partial_plain_ancestral",
                           title="Sample (ordinary euler_ancestral)")
    g.group("4 · Same start, ordinary ancestral sampler (step noise not mirrored)", list(plain), C_BASE)

    mx = max(n.pos[0] + n.size[0] for n in (*res, *plain)) + 80
    metric = _metric(g, (mx, y), res[1]["IMAGE"], reference=plain[1]["IMAGE"], pairing="interleaved",
                     title="Pair Diversity Metric (reference = not mirrored)")
    g.group("5 · Pair diversity: mirrored vs not mirrored", [metric], C_MEASURE)

    g.note(
        "## Partial antithetic pair + ancestral sampler (SD1.5)\n"
        "* The **mask** (right half) limits the antithetic negation: outside it both images of a pair share the "
        "same noise, inside it they get z and -z. The left half stays (nearly) the same, the right half varies.\n"
        "* Ancestral samplers add fresh noise at every step, which makes a pair independent again. *Antithetic "
        "Sampler* mirrors that step noise inside the same mask, so the pair stays anti-correlated (group 3). "
        "Group 4 runs plain *euler_ancestral* from the same start for comparison.\n"
        "* The metric uses the unmirrored branch as its reference: pair correlation is lower with mirroring.\n\n"
        "Use the same group size, layout and mask on the noise node and the sampler node (the badge turns red "
        "when they differ).",
        (0, -470), (900, 360))
    return g.to_json()


def build_brightness_pairs(object_info: dict) -> dict:
    """Ready for ``antithetic-queue estimate`` as it is: one noise node (antithetic pairs), one image-saving node,
    and the interval node wired to the NOISE and the latent (for ``--control-variates on``). API format only."""
    g = UIGraph(object_info, name="brightness_pairs")
    s = _setup(g, SD15, "a lighthouse on a rocky coast at dusk, photograph", width=512, height=512, batch=8,
               steps=20, cfg=7.0, sampler="euler", scheduler="normal")
    x = 2 * COL + 60
    anti = _ours(g, g.add("AntitheticLatentNoise", (x, 0), size=(330, 154), noise_seed=SEED, group_size=2,
                          layout="interleaved"))
    res = _sample_decode(g, s, anti["NOISE"], x, 200, prefix="antithetic/estimate", title="Sample (antithetic pairs)")
    _ours(g, g.add("NoiseDesignConfidenceInterval", (x + 860, 0), size=CI_SIZE, images=res[1]["IMAGE"],
                   design="antithetic pairs", group_size=2, layout="interleaved", statistic="mean brightness",
                   confidence=0.95, noise=anti["NOISE"], latent=s["latent"]["LATENT"]))
    return g.to_json()


# API-format only (workflows/api/<name>.json, no template): workflows for the batch client, built like the others
API_ONLY_BUILDERS: dict[str, Callable[[dict], dict]] = {
    "brightness_pairs": build_brightness_pairs,
}

BUILDERS: dict[str, Callable[[dict], dict]] = {
    "antithetic_vs_independent": build_antithetic_vs_independent,
    "k_antithetic_gallery": build_k_antithetic_gallery,
    "sobol_rqmc_estimate": build_sobol_rqmc_estimate,
    "nag_guided_ksampler": build_nag_guided_ksampler,
    "flow_model_antithetic": build_flow_model_antithetic,
    "partial_antithetic_ancestral": build_partial_antithetic_ancestral,
}

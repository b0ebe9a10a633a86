"""Real ComfyUI: Pair Diversity Metric and Confidence Interval (noise design) after VAEDecode on the tiny checkpoint.

One prompt builds an antithetic batch (Antithetic Latent Noise, interleaved pairs) and an independent reference batch
(RandomNoise) from the same model, prompt and sampler, decodes both, and feeds them to both metric nodes; their
summaries (ui text) and plots must arrive in /history. A second prompt checks that a reference of another size is
refused with an error naming the input.
"""

from __future__ import annotations

import pytest
from antithetic_sampling.nodes.local_comfy.errors import ComfyError, execution_error

pytestmark = pytest.mark.e2e

BATCH = 4


def _graph(comfy_graph, seed: int, extra: dict) -> dict:
    noise = {"class_type": "AntitheticLatentNoise", "inputs": {"noise_seed": seed, "group_size": 2, "layout": "interleaved"}}
    nodes = {
        # independent-noise reference: same guider / sampler / sigmas / latent, RandomNoise
        "ref_noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed + 1}},
        "ref_sample": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {"noise": ["ref_noise", 0], "guider": "@guider", "sampler": "@sampler", "sigmas": "@sigmas",
                       "latent_image": "@latent"},
        },
        "ref_decode": {"class_type": "VAEDecode", "inputs": {"samples": ["ref_sample", 0], "vae": "@vae"}},
    }
    nodes.update(extra)
    return comfy_graph(noise=noise, seed=seed, batch_size=BATCH, width=64, height=64, steps=3, save=True,
                       filename_prefix="e2e_metrics", extra_nodes=nodes)


def test_metric_nodes_in_a_workflow(comfy_server, comfy_graph):
    for cls in ("PairDiversityMetric", "NoiseDesignConfidenceInterval"):
        info = comfy_server.object_info(cls)
        assert info["category"] == "antithetic/metrics"
        assert "2506.06185" in info["description"]
    extra = {
        "diversity": {
            "class_type": "PairDiversityMetric",
            "inputs": {"images": "@image", "pairing": "interleaved", "group_size": 2, "reference": ["ref_decode", 0]},
        },
        "diversity_all": {
            "class_type": "PairDiversityMetric",
            "inputs": {"images": "@image", "pairing": "all pairs", "group_size": 2},
        },
        "interval": {
            "class_type": "NoiseDesignConfidenceInterval",
            "inputs": {"images": "@image", "design": "antithetic pairs", "group_size": 2, "layout": "interleaved",
                       "statistic": "mean brightness", "channel": 0, "threshold": 0.5, "confidence": 0.95},
        },
        "interval_map": {
            "class_type": "NoiseDesignConfidenceInterval",
            "inputs": {"images": ["ref_decode", 0], "design": "iid", "group_size": 2, "layout": "interleaved",
                       "statistic": "per-pixel mean map", "channel": 0, "threshold": 0.5, "confidence": 0.9},
        },
        # the STRING / IMAGE outputs feed ordinary nodes downstream
        "save_plot": {"class_type": "SaveImage", "inputs": {"images": ["diversity", 7], "filename_prefix": "e2e_div"}},
        "save_width": {"class_type": "SaveImage", "inputs": {"images": ["interval", 6], "filename_prefix": "e2e_ci"}},
    }
    hist = comfy_server.run(_graph(comfy_graph, 11, extra))
    out = comfy_server.outputs(hist)

    div = out["diversity"]
    text = div["text"][0]
    assert "interleaved pairs, 2 pair(s) of 4 images" in text
    for label in ("Pearson correlation", "centered correlation", "1 - SSIM", "RMSE", "Vendi score"):
        assert label in text
    assert "reference" in text
    assert div.get("images"), "the diversity plot preview should be in /history"
    assert "6 pair(s) of 4 images" in out["diversity_all"]["text"][0]

    ci_text = out["interval"]["text"][0]
    assert "95% CI, pairs, 2 units, dof 1" in ci_text
    assert "efficiency vs iid" in ci_text
    assert "90% CI, iid, 4 units, dof 3" in out["interval_map"]["text"][0]

    plot = comfy_server.images(hist, "save_plot")[0]
    assert plot.width > 300 and plot.height > 200
    width_map = comfy_server.images(hist, "save_width")[0]
    assert width_map.size == (64, 64)


def test_reference_of_another_size_is_refused(comfy_server, comfy_graph):
    extra = {
        "small_ref": {"class_type": "ImageScale",
                      "inputs": {"image": ["ref_decode", 0], "upscale_method": "nearest-exact", "width": 32, "height": 32,
                                 "crop": "disabled"}},
        "diversity": {
            "class_type": "PairDiversityMetric",
            "inputs": {"images": "@image", "pairing": "interleaved", "group_size": 2, "reference": ["small_ref", 0]},
        },
    }
    with pytest.raises(ComfyError) as err:
        comfy_server.run(_graph(comfy_graph, 11, extra))
    data = execution_error(err.value)
    assert data.get("node_type") == "PairDiversityMetric"
    assert "reference" in data.get("exception_message", "")
    assert "(64, 64, 3)" in data["exception_message"] and "(32, 32, 3)" in data["exception_message"]

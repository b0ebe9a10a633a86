"""The extra names each node of the pack answers to in ComfyUI's node search (``io.Schema.search_aliases``).

The frontend's node search matches a node's id, its display name and these aliases, not its category, so without
them a search for "qmc" or "noise awareness" misses nodes whose names do not spell the words out. Every node
answers to the pack's name ("antithetic"); the rest say what the node is for: the noise designs that make a batch
diverse ("diversity", "variance reduction"), the RQMC design and the interval that reads it ("sobol", "qmc",
"rqmc"), and the guidance ("noise awareness"; never a bare "NAG", which names another method elsewhere).

Cores whose ``io.Schema`` has no ``search_aliases`` field define the nodes without them (``comfy_compat``).
"""

from __future__ import annotations

# The searches this table is made to answer: each must find every node listed for it in the tests.
SEARCH_TERMS = ("antithetic", "sobol", "qmc", "rqmc", "noise awareness", "diversity")

SEARCH_ALIASES: dict[str, list[str]] = {
    "AntitheticLatentNoise": [
        "antithetic", "antithetic noise", "mirrored noise", "negated noise", "diversity", "diverse batch",
        "variance reduction",
    ],
    "SobolRQMCLatentBatch": [
        "antithetic", "sobol", "qmc", "rqmc", "quasi-monte carlo", "randomized quasi-monte carlo",
        "low discrepancy noise", "diversity", "diverse batch", "variance reduction",
    ],
    "AntitheticSampler": [
        "antithetic", "antithetic sampler", "mirrored step noise", "ancestral", "sde", "diversity",
    ],
    "AntitheticKSampler": [
        "antithetic", "antithetic ksampler", "ksampler", "mirrored step noise", "diversity", "diverse batch",
        "variance reduction",
    ],
    "NoiseAwarenessGuider": [
        "antithetic", "noise awareness", "noise awareness guidance", "noise shift", "guider", "cfg",
    ],
    "NoiseAwarenessGuidedKSampler": [
        "antithetic", "noise awareness", "noise awareness guidance", "noise shift", "ksampler", "guidance",
    ],
    "NoiseShiftProbe": [
        "antithetic", "noise awareness", "noise shift", "noise level", "sigma estimate",
    ],
    "PairDiversityMetric": [
        "antithetic", "diversity", "batch diversity", "pair correlation", "ssim", "vendi",
    ],
    "NoiseDesignConfidenceInterval": [
        "antithetic", "confidence interval", "error bar", "estimate", "sobol", "qmc", "rqmc", "variance reduction",
    ],
}

"""AntitheticSampler against ComfyUI's real k-diffusion samplers (in a ComfyUI python subprocess).

With an odd denoiser (D(x) = 0) the sampler's update is odd in (x, step noise), so the two members of a pair stay
exact mirrors at every step *only* if the step noise is mirrored too. Core samplers (the control) break the
mirror at the first injected noise; deterministic samplers come back unchanged.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = r"""
import importlib.util, json, pathlib, sys
sys.path.insert(0, ".")
root = pathlib.Path(sys.argv[1])
sys.argv = ["main.py", "--cpu"]  # ComfyUI reads its CLI flags at import time
import comfy.options
comfy.options.enable_args_parsing()
spec = importlib.util.spec_from_file_location("antithetic_sampling", root / "__init__.py",
                                              submodule_search_locations=[str(root)])
m = importlib.util.module_from_spec(spec); sys.modules["antithetic_sampling"] = m; spec.loader.exec_module(m)
import torch
torch.set_num_threads(1)
import comfy.model_sampling, comfy.samplers
from antithetic_sampling.nodes.sampler_nodes import accepts_noise_sampler, mirrored_sampler

class MS(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    pass

ms = MS(None)

class Obj:
    pass

class OddModel:
    # The attribute chain k-diffusion samplers read, and an odd denoiser D(x) = 0.
    def __init__(self, states):
        self.inner_model = Obj(); self.inner_model.inner_model = Obj()
        self.inner_model.inner_model.model_sampling = ms
        self.inner_model.model_patcher = Obj(); self.inner_model.model_patcher.get_model_object = lambda name: ms
        self.states = states
    def __call__(self, x, sigma, **kw):
        self.states.append(x.clone())
        return torch.zeros_like(x)

def run(sampler):
    states = []
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x[1] = -x[0]; x[3] = -x[2]
    sig = torch.tensor([10.0, 6.0, 3.0, 1.5, 0.5, 0.0])
    out = sampler.sampler_function(OddModel(states), x * 10, sig, extra_args={"seed": 3}, callback=None,
                                   disable=True, **sampler.extra_options)
    states.append(out)
    mirrored = all(bool(torch.allclose(s[0], -s[1], atol=1e-4) and torch.allclose(s[2], -s[3], atol=1e-4))
                   for s in states)
    return {"mirrored": mirrored, "evals": len(states) - 1}

res = {}
for name in ["euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddpm"]:
    res[name] = {"ours": run(mirrored_sampler(name)), "core": run(comfy.samplers.sampler_object(name))}
for name in ["euler", "dpmpp_2m", "ddim", "uni_pc"]:
    ours = mirrored_sampler(name)
    core = comfy.samplers.sampler_object(name)
    res[name] = {"unchanged": ours.sampler_function is core.sampler_function
                 and ours.extra_options == core.extra_options and ours.inpaint_options == core.inpaint_options}
# Slices: every sampler whose step noise we replace, both layouts, full batch of 4 vs items [2, 3] and [3], with an
# item-wise denoiser (so the model adds no batch coupling) and the batch_index recalled from the NOISE object, as in
# SamplerCustomAdvanced (generate_noise, then the sampler with seed = NOISE.seed).
from antithetic_sampling.nodes.noise_objects import AntitheticNoiseGenerator

class ItemwiseModel(OddModel):
    def __call__(self, x, sigma, model_options=None, **kw):
        s = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x)
        d = x / (1.0 + s * s)
        for fn in (model_options or {}).get("sampler_post_cfg_function", []):  # CFG++ samplers read uncond here
            d = fn({"denoised": d, "cond": None, "uncond": None, "cond_scale": 1.0, "model": None,
                    "uncond_denoised": d, "cond_denoised": d, "sigma": sigma, "model_options": model_options,
                    "input": x})
        return d

def run_slice(name, layout, index):
    design_size = 4 if layout == "halves" else 0
    noise_obj = AntitheticNoiseGenerator(11, 2, layout, design_size)
    latent = {"samples": torch.zeros(len(index) if index else 4, 4, 8, 8)}
    if index:
        latent["batch_index"] = list(index)
    noise = noise_obj.generate_noise(latent)
    sampler = mirrored_sampler(name, 2, layout, design_size)
    sig = torch.tensor([10.0, 6.0, 3.0, 1.5, 0.5, 0.0])
    return sampler.sampler_function(ItemwiseModel([]), noise * sig[0], sig, extra_args={"seed": noise_obj.seed},
                                    callback=None, disable=True, **sampler.extra_options)

slices = {}
for name in comfy.samplers.SAMPLER_NAMES:
    if not accepts_noise_sampler(comfy.samplers.sampler_object(name).sampler_function):
        continue  # no step noise to key (deterministic samplers come back unchanged)
    for layout in ("interleaved", "halves"):
        try:
            full = run_slice(name, layout, None)
            a, b = run_slice(name, layout, [2, 3]), run_slice(name, layout, [3])
            slices[f"{name}/{layout}"] = {
                "pair": float((a - full[2:]).abs().max()), "single": float((b - full[3:]).abs().max()),
                "stochastic": float((full[0] + full[1]).abs().max()) if layout == "interleaved" else None}
        except Exception as e:  # noqa: BLE001 - reported per sampler
            slices[f"{name}/{layout}"] = {"error": f"{type(e).__name__}: {e}"}
res["slices"] = slices
try:
    mirrored_sampler("no_such_sampler")
    res["bad_name"] = "no error"
except ValueError as e:
    res["bad_name"] = str(e)
print("@@RESULT@@" + json.dumps(res))
"""


@pytest.fixture(scope="module")
def sampler_results(comfy_env):
    cenv = comfy_env
    proc = subprocess.run(
        [cenv.python, "-c", SCRIPT, str(ROOT)],
        cwd=str(cenv.comfy_path), env=cenv.env, capture_output=True, text=True, timeout=600,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")), None)
    assert line, f"subprocess failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(line[len("@@RESULT@@"):])


ROOT = pathlib.Path(__file__).resolve().parents[1]
STOCHASTIC = ["euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddpm"]


@pytest.mark.e2e
@pytest.mark.parametrize("name", STOCHASTIC)
def test_step_noise_is_mirrored_within_pairs(sampler_results, name):
    r = sampler_results[name]
    assert r["ours"]["evals"] >= 3
    assert r["ours"]["mirrored"], f"{name}: states stopped being mirror images with AntitheticSampler"
    assert not r["core"]["mirrored"], f"{name}: control (core sampler) unexpectedly stayed mirrored"


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["euler", "dpmpp_2m", "ddim", "uni_pc"])
def test_deterministic_samplers_are_unaffected(sampler_results, name):
    assert sampler_results[name]["unchanged"]


@pytest.mark.e2e
def test_every_stochastic_sampler_reproduces_slices(sampler_results):
    """Every ComfyUI sampler with step noise (ancestral, SDE, ddpm, lcm, er_sde, seeds, sa_solver, ...), both
    layouts: items [2, 3] and item [3] sampled alone equal the same items of the full batch exactly."""
    slices = sampler_results["slices"]
    names = {k.split("/")[0] for k in slices}
    assert {"euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddpm", "lcm", "er_sde"} <= names
    bad = {k: v for k, v in slices.items() if "error" in v or v["pair"] != 0.0 or v["single"] != 0.0}
    assert not bad, bad


@pytest.mark.e2e
def test_unknown_sampler_name_is_a_clear_error(sampler_results):
    assert "is not a ComfyUI sampler" in sampler_results["bad_name"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

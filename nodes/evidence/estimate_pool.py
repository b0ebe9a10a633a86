"""Pools of design units from the embedded digits model, sampled once and cached, for ``estimate-bench``.

A pool holds, for every image of a long run of one noise design (items in design order, so any block of whole
units is an independent unit of the design): the statistics of ``common.statistics`` (brightness, energy) and
the lowest DCT coefficients of the image's initial noise z (the control-variate inputs). Repetitions of the
estimate procedure then draw whole units from the pool with replacement: that is exact iid sampling of units from
the pool's empirical law, whose mean (the pool mean) is the truth the coverage is measured against.

Cached as ``<out>/estimate_pool/<design>_<images>_<steps>_<seed>_c<coefficients>.npz``.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

POOL_DESIGNS = ("iid", "antithetic", "k4", "rqmc")
COEFFICIENTS = 24  # the principal-quadratic surrogate reads the 24 lowest
CHUNK = 8192


def pool_path(out: pathlib.Path, design: str, images: int, steps: int, seed: int) -> pathlib.Path:
    return pathlib.Path(out) / "estimate_pool" / f"{design}_{images}_{steps}_{seed}_c{COEFFICIENTS}.npz"


def sample_images(model, design, n: int, noise_seed: int, steps: int = 10) -> dict[str, np.ndarray]:
    """``n`` images (whole units) of one design from one noise seed: statistics and noise coefficients."""
    from ..methods.noise_control_variates import low_frequency_dct
    from . import common, harness

    noise = design.noise((n, *model.shape), noise_seed)
    x0 = harness.generate(model, noise, steps=steps, sampler="dpmpp_2m", schedule="karras")
    s = common.statistics(model, x0)
    return {"brightness": s["brightness"], "energy": s["energy"],
            "coefficients": low_frequency_dct(noise, COEFFICIENTS).astype(np.float32)}


def load_design(design_name: str, points: int = 8):
    """(digits model, design object) for one of ``POOL_DESIGNS``."""
    import torch

    from . import common
    from .designs import make_designs

    torch.set_num_threads(1)
    model = common.load_model("digits")
    return model, make_designs(model.shape, points=points, spectral=(), include=[design_name])[0]


def build_pool(design_name: str, images: int, steps: int = 10, seed: int = 0, points: int = 8,
               progress=None) -> dict[str, np.ndarray]:
    """Sample ``images`` images of one design (chunks of whole units, a fresh seed per chunk)."""
    model, design = load_design(design_name, points)
    parts: dict[str, list] = {"brightness": [], "energy": [], "coefficients": []}
    done = 0
    t0 = time.perf_counter()
    chunk = CHUNK - CHUNK % design.unit_size
    while done < images:
        n = min(chunk, images - done)
        n -= n % design.unit_size
        s = sample_images(model, design, n, seed * 1_000_003 + done, steps)
        for k in parts:
            parts[k].append(s[k])
        done += n
        if progress:
            progress(n)
    return {**{k: np.concatenate(v) for k, v in parts.items()}, "unit_size": np.array(design.unit_size),
            "seconds": np.array(time.perf_counter() - t0)}


def load_or_build(out: pathlib.Path, design: str, images: int, steps: int = 10, seed: int = 0,
                  progress=None) -> dict[str, np.ndarray]:
    path = pool_path(out, design, images, steps, seed)
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    pool = build_pool(design, images, steps, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez(tmp, **pool)
    tmp.replace(path)
    return pool


if __name__ == "__main__":  # pragma: no cover - build the default pools in the background
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 131072
    for i, d in enumerate(POOL_DESIGNS):
        p = load_or_build(pathlib.Path("bench_out"), d, n, seed=i)
        print(d, p["brightness"].shape, float(p["seconds"]), flush=True)

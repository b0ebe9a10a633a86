"""``antithetic-sampling train``: retrain the embedded digits denoiser (seeded, CPU, single thread).

Reads scikit-learn's bundled handwritten digits (``load_digits``: 1797 images of 8x8, no download), scales them to
[-1, 1], upsamples to 16x16 (bilinear), holds out a seeded 10 % validation split, and trains the EDM-preconditioned
residual MLP of :mod:`.digits` with Adam, a cosine learning-rate decay and an exponential moving average (EMA) of the
weights (the EMA weights are saved). Writes ``digits_denoiser.safetensors`` and ``digits_denoiser.json``
(architecture, schedule, seed, steps, recorded validation loss, sha256 of the weights, training time).

scikit-learn is needed here (and in the digit-likeness test) only; loading and sampling never import it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pathlib
import platform
import time

import torch
from torch.nn import functional as F

from .. import cli_args
from .digits import (
    CONFIG_NAME,
    DEFAULT_ARCH,
    DEFAULT_SCHEDULE,
    WEIGHTS_DIR,
    WEIGHTS_NAME,
    build_denoiser,
    edm_loss,
    sha256_file,
    validation_loss,
)

DATA_SEED = 1234  # validation split
VAL_SEED = 4321  # fixed (sigma, noise) draws of the validation loss
VAL_FRACTION = 0.1


def load_digit_images(resolution: int = 16) -> torch.Tensor:
    """All 1797 digits as float32 [N, 1, res, res] in [-1, 1] (needs scikit-learn)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("training needs scikit-learn (a dev/bench dependency): pip install scikit-learn") from exc
    images = torch.tensor(load_digits().images, dtype=torch.float32)  # [N, 8, 8], 0..16
    x = (images / 16.0) * 2.0 - 1.0
    x = x[:, None]
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False).clamp(-1, 1)
    return x.contiguous()


def split(x: torch.Tensor, seed: int = DATA_SEED, fraction: float = VAL_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, validation) split."""
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_val = int(round(x.shape[0] * fraction))
    return x[perm[n_val:]], x[perm[:n_val]]


@torch.no_grad()
def init_parameters(net: torch.nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default ``nn.Linear`` initialisation, drawn from a private generator (never the global RNG).

    weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (= kaiming_uniform with a = sqrt(5)), bias from the same range.
    """
    for module in net.modules():
        if isinstance(module, torch.nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            module.weight.uniform_(-bound, bound, generator=gen)
            if module.bias is not None:
                module.bias.uniform_(-bound, bound, generator=gen)


def train(
    out_dir: pathlib.Path,
    steps: int = 20000,
    batch: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    ema_decay: float = 0.998,
    log_every: int = 250,
    arch: dict | None = None,
) -> dict:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    arch = dict(DEFAULT_ARCH if arch is None else arch)
    x_all = load_digit_images(arch["resolution"])
    x_train, x_val = split(x_all)
    schedule = dict(DEFAULT_SCHEDULE)
    schedule["sigma_data"] = round(float(x_train.std()), 4)
    model = build_denoiser(arch, schedule)
    init_parameters(model.net, torch.Generator().manual_seed(seed))
    ema = copy.deepcopy(model.net)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.net.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)) * min(1.0, (i + 1) / 100))
    gen = torch.Generator().manual_seed(seed + 1)
    model.net.train()
    running = 0.0
    for step in range(steps):
        idx = torch.randint(0, x_train.shape[0], (batch,), generator=gen)
        x0 = x_train[idx]
        # Cheap augmentation that keeps digits digit-like: random 1-pixel shifts.
        shift = torch.randint(-1, 2, (2,), generator=gen)
        x0 = torch.roll(x0, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
        ln_sigma = torch.randn(batch, generator=gen) * schedule["p_std"] + schedule["p_mean"]
        noise = torch.randn(x0.shape, generator=gen)
        loss = edm_loss(model, x0, ln_sigma.exp(), noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.net.parameters(), strict=True):
                if pm.requires_grad:
                    pe.lerp_(pm, 1 - ema_decay)
        running += float(loss.detach())
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {running / log_every:.4f}  {time.perf_counter() - t0:.0f}s", flush=True)
            running = 0.0
    model.net = ema.eval()
    val = validation_loss(model, x_val, VAL_SEED)
    train_time = time.perf_counter() - t0

    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    w_path = out_dir / WEIGHTS_NAME
    state = {k: v.detach().contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(w_path))
    config = {
        "model": "DigitsMLP (EDM-preconditioned residual-MLP denoiser, VE coordinates)",
        "dataset": "sklearn.datasets.load_digits, [-1, 1], bilinear 8x8 -> 16x16",
        "arch": arch,
        "schedule": schedule,
        "training": {
            "seed": seed,
            "steps": steps,
            "batch": batch,
            "lr": lr,
            "ema_decay": ema_decay,
            "augmentation": "random integer shift in {-1,0,1}^2 (torch.roll)",
            "data_split_seed": DATA_SEED,
            "val_fraction": VAL_FRACTION,
            "train_images": int(x_train.shape[0]),
            "val_images": int(x_val.shape[0]),
            "threads": 1,
            "train_time_s": round(train_time, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "parameters": model.parameter_count(),
        "validation": {"seed": VAL_SEED, "repeats": 8, "loss": val},
        "weights_file": WEIGHTS_NAME,
        "weights_sha256": sha256_file(w_path),
    }
    (out_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return config


def main(argv: list[str] | None = None) -> int:
    ap = cli_args.parser("train")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.out = args.out or str(WEIGHTS_DIR)
    cfg = train(pathlib.Path(args.out), steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    print(
        f"trained {cfg['parameters']} parameters in {cfg['training']['train_time_s']} s; "
        f"validation loss {cfg['validation']['loss']:.5f}; weights -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

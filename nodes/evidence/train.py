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
import shutil
import time

import torch
from torch.nn import functional as F

from .. import cli_args
from .digits import (
    DEFAULT_ARCH,
    DEFAULT_REGRESSOR_ARCH,
    DEFAULT_SCHEDULE,
    DENOISER_STEM,
    NAG_STEM,
    REGRESSOR_STEM,
    WEIGHTS_DIR,
    build_denoiser,
    build_regressor,
    edm_loss,
    load_digits_denoiser,
    regressor_nll,
    regressor_validation,
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


def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), net.parameters(), strict=True):
            if pm.requires_grad:
                pe.lerp_(pm, 1 - decay)


def _augment(x_train: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Random training digits, the whole batch rolled by one random 1-pixel shift (keeps digits digit-like)."""
    idx = torch.randint(0, x_train.shape[0], (batch,), generator=gen)
    shift = torch.randint(-1, 2, (2,), generator=gen)
    return torch.roll(x_train[idx], shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))


def _warmup_cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """100-step linear warm-up, then cosine decay to 0 over ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)) * min(1.0, (i + 1) / 100))


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
    sched = _warmup_cosine(opt, steps)
    gen = torch.Generator().manual_seed(seed + 1)
    model.net.train()
    running = 0.0
    for step in range(steps):
        x0 = _augment(x_train, batch, gen)
        ln_sigma = torch.randn(batch, generator=gen) * schedule["p_std"] + schedule["p_mean"]
        noise = torch.randn(x0.shape, generator=gen)
        loss = edm_loss(model, x0, ln_sigma.exp(), noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        _ema_update(ema, model.net, ema_decay)
        running += float(loss.detach())
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {running / log_every:.4f}  {time.perf_counter() - t0:.0f}s", flush=True)
            running = 0.0
    model.net = ema.eval()
    val = validation_loss(model, x_val, VAL_SEED)
    train_time = time.perf_counter() - t0

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
    }
    return _save(out_dir, DENOISER_STEM, model.net, config)


DEFAULT_DROPOUT = 0.15  # share of training items whose level is replaced by the "no level" token (paper: 10-20 %)
NAG_STEPS = 4000
REGRESSOR_STEPS = 3000


def _save(out_dir: pathlib.Path, stem: str, net: torch.nn.Module, config: dict) -> dict:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` (with the weights' sha256) to ``out_dir``."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    w_path = out_dir / f"{stem}.safetensors"
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(w_path))
    config = dict(config, weights_file=w_path.name, weights_sha256=sha256_file(w_path))
    (out_dir / f"{stem}.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def train_level_dropout(
    out_dir: pathlib.Path,
    base_dir: pathlib.Path | None = None,
    steps: int = NAG_STEPS,
    batch: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    dropout: float = DEFAULT_DROPOUT,
    ema_decay: float = 0.998,
    log_every: int = 250,
) -> dict:
    """Fine-tune the shipped denoiser with noise-condition dropout (Zhong et al., arXiv 2510.12497: converged
    checkpoints + a short fine-tune with 10-20 % dropout). Each training item independently has its noise-level
    embedding replaced by a learned "no level" token with probability ``dropout``; everything else (data, split,
    augmentation, EDM loss, Adam + cosine decay, EMA) is the shipped recipe. The base weights' hash is verified and
    recorded. Writes ``digits_denoiser_level_dropout.{safetensors,json}``."""
    if not 0.0 < dropout < 1.0:
        raise ValueError(f"dropout must be in (0, 1), got {dropout}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    base = load_digits_denoiser(base_dir)
    arch = dict(base.config["arch"], null_level=True)
    schedule = dict(base.config["schedule"])
    x_train, x_val = split(load_digit_images(arch["resolution"]))
    model = build_denoiser(arch, schedule)
    missing, unexpected = model.net.load_state_dict(base.net.state_dict(), strict=False)
    if set(missing) != {"null_emb"} or unexpected:
        raise RuntimeError(f"base weights do not fit the dropout network: missing {missing}, unexpected {unexpected}")
    gen = torch.Generator().manual_seed(seed + 101)
    with torch.no_grad():  # the token starts at a seeded small vector (zero would tie it to the FiLM biases)
        model.net.null_emb.normal_(0.0, 0.02, generator=gen)
    for p in model.net.parameters():
        p.requires_grad_(True)
    ema = copy.deepcopy(model.net)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(list(model.net.parameters()), lr=lr)
    sched = _warmup_cosine(opt, steps)
    model.net.train()
    running = 0.0
    for step in range(steps):
        x0 = _augment(x_train, batch, gen)
        ln_sigma = torch.randn(batch, generator=gen) * schedule["p_std"] + schedule["p_mean"]
        noise = torch.randn(x0.shape, generator=gen)
        drop = torch.rand(batch, generator=gen) < dropout
        loss = edm_loss(model, x0, ln_sigma.exp(), noise, drop).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        _ema_update(ema, model.net, ema_decay)
        running += float(loss.detach())
        if log_every and (step + 1) % log_every == 0:
            print(f"level-dropout step {step + 1}/{steps}  loss {running / log_every:.4f}  "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
            running = 0.0
    model.net = ema.eval()
    val_c = validation_loss(model, x_val, VAL_SEED)
    val_u = validation_loss(model, x_val, VAL_SEED, unconditional=True)
    config = {
        "model": "DigitsMLP with noise-condition dropout (learned 'no level' token; EDM-preconditioned, VE)",
        "dataset": "sklearn.datasets.load_digits, [-1, 1], bilinear 8x8 -> 16x16",
        "arch": arch,
        "schedule": schedule,
        "base": {"weights_sha256": base.config["weights_sha256"], "validation_loss": base.config["validation"]["loss"]},
        "training": {
            "recipe": "fine-tune of the base weights with noise-condition dropout",
            "seed": seed, "steps": steps, "batch": batch, "lr": lr, "ema_decay": ema_decay, "dropout": dropout,
            "augmentation": "random integer shift in {-1,0,1}^2 (torch.roll)", "data_split_seed": DATA_SEED,
            "val_fraction": VAL_FRACTION, "train_images": int(x_train.shape[0]), "val_images": int(x_val.shape[0]),
            "threads": 1, "train_time_s": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "parameters": model.parameter_count(),
        "validation": {"seed": VAL_SEED, "repeats": 8, "loss": val_c, "loss_unconditional": val_u},
    }
    return _save(out_dir, NAG_STEM, model.net, config)


def train_regressor(
    out_dir: pathlib.Path,
    steps: int = REGRESSOR_STEPS,
    batch: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    ema_decay: float = 0.995,
    log_every: int = 250,
    schedule: dict | None = None,
) -> dict:
    """Train the noise-level regressor g(sigma | x) of the paper's classifier form on the same data and the same
    law of levels as the denoiser (ln sigma ~ N(P_mean, P_std^2), shift augmentation), by Gaussian NLL.
    Writes ``digits_level_regressor.{safetensors,json}``."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    schedule = dict(DEFAULT_SCHEDULE if schedule is None else schedule)
    arch = dict(DEFAULT_REGRESSOR_ARCH)
    x_train, x_val = split(load_digit_images(arch["resolution"]))
    net = build_regressor(arch)
    init_parameters(net, torch.Generator().manual_seed(seed + 202))
    ema = copy.deepcopy(net)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(list(net.parameters()), lr=lr)
    sched = _warmup_cosine(opt, steps)
    gen = torch.Generator().manual_seed(seed + 203)
    net.train()
    running = 0.0
    for step in range(steps):
        x0 = _augment(x_train, batch, gen)
        ln_sigma = torch.randn(batch, generator=gen) * schedule["p_std"] + schedule["p_mean"]
        noise = torch.randn(x0.shape, generator=gen)
        loss = regressor_nll(net, x0, ln_sigma, noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        _ema_update(ema, net, ema_decay)
        running += float(loss.detach())
        if log_every and (step + 1) % log_every == 0:
            print(f"level-regressor step {step + 1}/{steps}  nll {running / log_every:.4f}  "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
            running = 0.0
    ema.eval()
    val = regressor_validation(ema, x_val, schedule, VAL_SEED)
    config = {
        "model": "LevelRegressor: Gaussian posterior of ln sigma given a VE state (noise-level classifier g)",
        "dataset": "sklearn.datasets.load_digits, [-1, 1], bilinear 8x8 -> 16x16",
        "arch": arch,
        "schedule": schedule,
        "training": {
            "seed": seed, "steps": steps, "batch": batch, "lr": lr, "ema_decay": ema_decay,
            "levels": "ln sigma ~ N(p_mean, p_std^2), as the denoiser", "data_split_seed": DATA_SEED,
            "val_fraction": VAL_FRACTION, "threads": 1, "train_time_s": round(time.perf_counter() - t0, 1),
            "torch": torch.__version__, "python": platform.python_version(),
        },
        "parameters": sum(p.numel() for p in ema.parameters()),
        "validation": {"seed": VAL_SEED, "repeats": 8, **val},
    }
    return _save(out_dir, REGRESSOR_STEM, ema, config)


MODELS = {
    "denoiser": (DENOISER_STEM,),
    "nag": (NAG_STEM, REGRESSOR_STEM),
}


def default_out_dir(model: str) -> pathlib.Path:
    """A new folder under ./trained_weights for every run (never the shipped weights)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = pathlib.Path("trained_weights") / f"{model}-{stamp}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def install(src_dir: pathlib.Path, stems: tuple[str, ...], dest_dir: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Copy freshly trained ``<stem>.safetensors`` + ``<stem>.json`` pairs over the shipped ones.

    Each config is re-checked against its weights first (hash), and the pair is replaced weights-first through
    temporary names, so the recorded hash and validation loss always describe the weights beside them."""
    from .digits import read_verified_config

    dest_dir = WEIGHTS_DIR if dest_dir is None else dest_dir
    written = []
    for stem in stems:
        read_verified_config(src_dir, stem, verify=True)
        for suffix in (".safetensors", ".json"):
            tmp = dest_dir / f".{stem}{suffix}.tmp"
            shutil.copyfile(src_dir / f"{stem}{suffix}", tmp)
            os.replace(tmp, dest_dir / f"{stem}{suffix}")
            written.append(dest_dir / f"{stem}{suffix}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = cli_args.parser("train")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = pathlib.Path(args.out) if args.out else default_out_dir(args.model)
    if out.resolve() == WEIGHTS_DIR.resolve():
        ap.error("--out is the shipped weights folder: use --install to replace the shipped weights")
    if args.model == "denoiser":
        cfg = train(out, steps=args.steps or 20000, batch=args.batch, lr=args.lr or 2e-3, seed=args.seed)
        print(f"trained {cfg['parameters']} parameters in {cfg['training']['train_time_s']} s; "
              f"validation loss {cfg['validation']['loss']:.5f}; weights -> {out}")
    else:
        cfg = train_level_dropout(out, steps=args.steps or NAG_STEPS, batch=args.batch, lr=args.lr or 1e-3,
                                  seed=args.seed, dropout=args.dropout)
        print(f"level-dropout denoiser: {cfg['training']['train_time_s']} s; validation loss "
              f"{cfg['validation']['loss']:.5f} (level hidden: {cfg['validation']['loss_unconditional']:.5f}); "
              f"weights -> {out}")
        reg = train_regressor(out, steps=args.steps or REGRESSOR_STEPS, batch=args.batch, seed=args.seed,
                              schedule=cfg["schedule"])
        print(f"level regressor: {reg['training']['train_time_s']} s; validation NLL {reg['validation']['nll']:.4f}, "
              f"mean |ln sigma error| {reg['validation']['mean_abs_log_error']:.4f}; weights -> {out}")
    if args.install:
        for path in install(out, MODELS[args.model]):
            print(f"installed {path}")
    else:
        # the folder is read by the command that uses these weights: demo for the denoiser, guidance-h2h for nag's
        user = "demo" if args.model == "denoiser" else "guidance-h2h"
        print(f"shipped weights unchanged ({WEIGHTS_DIR}); rerun with --install to replace them, or try them with "
              f"`antithetic-sampling {user} --weights {out}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

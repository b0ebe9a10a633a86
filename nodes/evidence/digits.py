"""The learned embedded model: a small residual-MLP denoiser trained on scikit-learn's handwritten digits.

Data: ``sklearn.datasets.load_digits`` (1797 images, 8x8, values 0..16), scaled to [-1, 1] and bilinearly
upsampled to 1x16x16 (only :mod:`.train` reads it; this module never imports scikit-learn).

Preconditioning (Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS
2022, Table 1, "EDM" column), VE coordinates x = x0 + sigma n:

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4,

with sd = sigma_data, trained with loss weight (sigma^2 + sd^2) / (sigma sd)^2 and ln(sigma) ~ N(P_mean, P_std^2).

The weights ship as ``weights/digits_denoiser.safetensors`` next to ``digits_denoiser.json`` (architecture,
schedule, training seed, recorded validation loss, sha256 of the weights file). :func:`load_digits_denoiser`
checks the hash before loading and raises :class:`WeightsIntegrityError` on a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
from statistics import NormalDist

import torch
from torch import nn
from torch.nn import functional as F

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"
DENOISER_STEM = "digits_denoiser"
WEIGHTS_NAME = f"{DENOISER_STEM}.safetensors"
CONFIG_NAME = f"{DENOISER_STEM}.json"
# The noise-condition-dropout variant and the noise-level regressor (issue: paper-faithful Noise Awareness Guidance).
NAG_STEM = "digits_denoiser_level_dropout"
REGRESSOR_STEM = "digits_level_regressor"

DEFAULT_ARCH = {"type": "residual_mlp", "width": 256, "depth": 3, "emb_dim": 64, "in_channels": 1, "resolution": 16}
DEFAULT_SCHEDULE = {"sigma_min": 0.01, "sigma_max": 20.0, "sigma_data": 0.6, "p_mean": -1.0, "p_std": 1.4}


class WeightsIntegrityError(ValueError):
    """The shipped weights do not match the sha256 recorded in their config (corrupt or edited file)."""


def sha256_file(path: str | pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- network
class _MLPBlock(nn.Module):
    """Pre-norm residual MLP block with a FiLM (scale, shift) from the sigma embedding."""

    def __init__(self, width: int, emb: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.film = nn.Linear(emb, 2 * width)
        self.fc = nn.Linear(width, width)

    def forward(self, h, emb):
        scale, shift = self.film(emb).chunk(2, dim=1)
        return h + self.fc(F.silu(self.norm(h) * (1 + scale) + shift))


class DigitsMLP(nn.Module):
    """Residual MLP F(x, c_noise) on the flattened image: dense layers are far cheaper than small convolutions on
    one CPU thread, which keeps training to minutes and sampling thousands of images to seconds."""

    def __init__(self, width: int = 256, depth: int = 3, emb_dim: int = 64, in_channels: int = 1, resolution: int = 16,
                 null_level: bool = False):
        super().__init__()
        d = in_channels * resolution * resolution
        self.register_buffer("freqs", torch.arange(1, emb_dim // 4 + 1, dtype=torch.float32), persistent=False)
        self.emb = nn.Sequential(nn.Linear(emb_dim // 2, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU())
        self.inp = nn.Linear(d, width)
        self.blocks = nn.ModuleList(_MLPBlock(width, emb_dim) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.out = nn.Linear(width, d)
        # Noise-condition dropout (Zhong et al., arXiv 2510.12497): a learned "no level" token that replaces the
        # noise-level embedding, so the same network also gives the noise-unconditional branch.
        self.null_emb = nn.Parameter(torch.zeros(emb_dim)) if null_level else None

    def forward(self, x, c_noise, drop: torch.Tensor | None = None):
        """``drop`` ([B] bool, needs ``null_level``): items whose level embedding is replaced by the null token."""
        ang = c_noise[:, None] * self.freqs[None] * math.pi
        emb = self.emb(torch.cat([torch.sin(ang), torch.cos(ang)], dim=1))
        if drop is not None:
            if self.null_emb is None:
                raise ValueError("this network was trained without noise-condition dropout: it has no 'no level' token")
            emb = torch.where(drop.reshape(-1, 1), self.null_emb.to(emb.dtype)[None], emb)
        h = self.inp(x.flatten(1))
        for blk in self.blocks:
            h = blk(h, emb)
        return self.out(F.silu(self.out_norm(h))).reshape(x.shape)


# --------------------------------------------------------------------------- denoiser
class DigitsDenoiser:
    """EDM-preconditioned denoiser following the harness protocol ``denoise(x [B,1,16,16], sigma [B]) -> x0``."""

    def __init__(self, net: nn.Module, schedule: dict, config: dict | None = None) -> None:
        self.net = net.eval()
        self.config = dict(config or {})
        self.schedule = dict(schedule)
        self.sigma_min = float(schedule["sigma_min"])
        self.sigma_max = float(schedule["sigma_max"])
        self.sigma_data = float(schedule["sigma_data"])
        res = int(self.config.get("arch", DEFAULT_ARCH).get("resolution", 16))
        cin = int(self.config.get("arch", DEFAULT_ARCH).get("in_channels", 1))
        self.shape = (cin, res, res)

    @property
    def has_null_level(self) -> bool:
        """True for a network trained with noise-condition dropout (it has the learned "no level" token)."""
        return getattr(self.net, "null_emb", None) is not None

    def precond(self, x: torch.Tensor, sigma: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """D(x, sigma) with gradients (used by training); ``drop`` [B] bool hides the level from those items.

        With the level hidden the preconditioning still uses the sampler's nominal sigma (as a t-dropped DiT still
        scales its epsilon by the schedule): only the network's noise-level *input* is replaced by the token."""
        s = sigma.reshape(-1, 1, 1, 1).to(x.dtype)
        sd = self.sigma_data
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        c_noise = sigma.to(x.dtype).log() / 4
        if drop is None:
            return c_skip * x + c_out * self.net(c_in * x, c_noise)
        return c_skip * x + c_out * self.net(c_in * x, c_noise, drop)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """x0-hat for x [B, 1, 16, 16] (float32) and sigma (float or [B] tensor, > 0)."""
        s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
        return self.precond(x.to(torch.float32), s).to(x.dtype)

    __call__ = denoise

    @torch.no_grad()
    def denoise_unconditional(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """The noise-unconditional branch D(x | no level): the network sees the "no level" token instead of sigma.

        Only for networks trained with noise-condition dropout (:attr:`has_null_level`); sigma enters only through
        the preconditioning, so the implied score (D - x) / sigma^2 is the paper's s(x)."""
        if not self.has_null_level:
            raise ValueError("denoise_unconditional needs a denoiser trained with noise-condition dropout")
        s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
        drop = torch.ones(x.shape[0], dtype=torch.bool)
        return self.precond(x.to(torch.float32), s, drop).to(x.dtype)

    def sigmas(self, n: int) -> torch.Tensor:
        """The model's own schedule: sigma_max, then the quantiles of the training law ln(sigma) ~ N(P_mean, P_std^2)
        at equal probability mass (descending, clipped to [sigma_min, sigma_max]), then 0."""
        n = int(n)
        if n < 1:
            raise ValueError(f"steps must be >= 1, got {n}")
        nd = NormalDist(float(self.schedule["p_mean"]), float(self.schedule["p_std"]))
        levels = [self.sigma_max]
        for i in range(1, n):
            q = 1.0 - i / n
            levels.append(min(self.sigma_max, max(self.sigma_min, math.exp(nd.inv_cdf(min(max(q, 1e-6), 1 - 1e-6))))))
        return torch.tensor([*levels, 0.0], dtype=torch.float32)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())


def build_denoiser(arch: dict | None = None, schedule: dict | None = None) -> DigitsDenoiser:
    arch = dict(DEFAULT_ARCH if arch is None else arch)
    schedule = dict(DEFAULT_SCHEDULE if schedule is None else schedule)
    if arch.get("type", "residual_mlp") != "residual_mlp":
        raise ValueError(f"unknown digits denoiser architecture {arch.get('type')!r}")
    # nn.Linear initialises itself from the global RNG; fork it so building a model never changes the caller's
    # random stream (the weights are loaded, or re-drawn from a private generator by train.init_parameters).
    with torch.random.fork_rng(devices=[]):
        net = DigitsMLP(
            int(arch["width"]), int(arch["depth"]), int(arch["emb_dim"]), int(arch["in_channels"]),
            int(arch["resolution"]), bool(arch.get("null_level", False)),
        )
    return DigitsDenoiser(net, schedule, {"arch": arch, "schedule": schedule})


def read_verified_config(wdir: pathlib.Path, stem: str, verify: bool = True) -> tuple[dict, pathlib.Path]:
    """(config, weights path) of ``<stem>.json`` / ``<stem>.safetensors`` in ``wdir``; with ``verify`` the weights'
    sha256 must equal the config's ``weights_sha256`` (else :class:`WeightsIntegrityError`)."""
    cfg_path, w_path = wdir / f"{stem}.json", wdir / f"{stem}.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(
            f"{stem} weights not found in {wdir} (need {cfg_path.name} and {w_path.name}); "
            "run `antithetic-sampling train` to recreate them"
        )
    config = json.loads(cfg_path.read_text())
    if verify:
        expected = config.get("weights_sha256")
        actual = sha256_file(w_path)
        if expected != actual:
            raise WeightsIntegrityError(
                f"{w_path} has sha256 {actual} but {cfg_path.name} records {expected}: the weights file is corrupt "
                "or was modified; restore it from the repository or retrain with `antithetic-sampling train`"
            )
    return config, w_path


def load_digits_denoiser(weights_dir: str | pathlib.Path | None = None, verify: bool = True,
                         stem: str = DENOISER_STEM) -> DigitsDenoiser:
    """Load a denoiser (default: the shipped one; ``stem=NAG_STEM``: the noise-condition-dropout variant); with
    ``verify`` (default) check the weights' sha256 against the config first."""
    from safetensors.torch import load_file

    wdir = pathlib.Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    config, w_path = read_verified_config(wdir, stem, verify)
    model = build_denoiser(config["arch"], config["schedule"])
    state = load_file(str(w_path))
    model.net.load_state_dict(state)
    model.config = dict(config, weights_path=str(w_path))
    model.net.eval()
    for p in model.net.parameters():
        p.requires_grad_(False)
    return model


def edm_loss(model: DigitsDenoiser, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
             drop: torch.Tensor | None = None) -> torch.Tensor:
    """Per-item EDM loss  lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2 / d  (mean over pixels); ``drop`` [B] bool:
    items trained without their level (noise-condition dropout)."""
    sd = model.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    pred = model.precond(x0 + sigma.reshape(-1, 1, 1, 1) * noise, sigma, drop)
    return weight * (pred - x0).pow(2).flatten(1).mean(1)


@torch.no_grad()
def validation_loss(model: DigitsDenoiser, x0: torch.Tensor, seed: int, repeats: int = 8,
                    unconditional: bool = False) -> float:
    """Mean EDM loss on a fixed seeded batch: every image ``repeats`` times with its own (sigma, noise);
    ``unconditional``: the same draws with the level hidden (the "no level" token)."""
    gen = torch.Generator().manual_seed(int(seed))
    x = x0.repeat(repeats, 1, 1, 1)
    ln_sigma = torch.randn(x.shape[0], generator=gen) * float(model.schedule["p_std"]) + float(model.schedule["p_mean"])
    sigma = ln_sigma.exp()
    noise = torch.randn(x.shape, generator=gen)
    drop = torch.ones(x.shape[0], dtype=torch.bool) if unconditional else None
    return float(edm_loss(model, x, sigma, noise, drop).mean())


# --------------------------------------------------------------------------- noise-level regressor g(sigma | x)
class LevelRegressor(nn.Module):
    """The paper's noise-level classifier for the classifier form of Noise Awareness Guidance (Zhong et al., arXiv
    2510.12497): a Gaussian posterior over ln sigma given a VE state x = x0 + sigma n,

        g(sigma | x) = N(ln sigma; mu(x), v(x)),   log g = -(ln sigma - mu)^2 / (2 v) - ln(v) / 2 + const,

    trained by Gaussian negative log-likelihood on the denoiser's own training law (ln sigma ~ N(P_mean, P_std^2)).
    Inputs: the state divided by its per-item RMS (shape) and the log RMS (scale), through a small residual MLP
    whose blocks are those of the denoiser without the level embedding. Differentiable in x: the classifier form
    needs grad_x log g(sigma | x).
    """

    def __init__(self, width: int = 256, depth: int = 2, in_channels: int = 1, resolution: int = 16) -> None:
        super().__init__()
        d = in_channels * resolution * resolution
        self.inp = nn.Linear(d + 1, width)
        self.fcs = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.out = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log v) of ln sigma for states x [B, ...]."""
        f = x.flatten(1)
        log_rms = 0.5 * (f.pow(2).mean(1, keepdim=True) + 1e-12).log()
        h = self.inp(torch.cat([f * torch.exp(-log_rms), log_rms], dim=1))
        for fc, norm in zip(self.fcs, self.norms, strict=True):
            h = h + fc(F.silu(norm(h)))
        out = self.out(F.silu(self.out_norm(h)))
        return out[:, 0] + log_rms[:, 0], out[:, 1]

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """log g(sigma | x) per item, up to the constant -ln(2 pi)/2 (density of ln sigma)."""
        mu, log_v = self(x)
        return -0.5 * (sigma.reshape(-1).to(x.dtype).log() - mu).pow(2) * torch.exp(-log_v) - 0.5 * log_v

    @torch.no_grad()
    def predict_level(self, x: torch.Tensor) -> torch.Tensor:
        """sigma_hat = exp(E[ln sigma | x]) per item: the level the state carries according to g."""
        mu, _ = self(x.to(torch.float32))
        return mu.exp()

    def grad_log_prob(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """grad_x log g(sigma | x) (same shape as x): the classifier-guidance direction."""
        s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
        with torch.enable_grad():
            xi = x.detach().to(torch.float32).requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_prob(xi, s).sum(), xi)
        return g.to(x.dtype)


DEFAULT_REGRESSOR_ARCH = {"type": "level_regressor_mlp", "width": 256, "depth": 2, "in_channels": 1, "resolution": 16}


def build_regressor(arch: dict | None = None) -> LevelRegressor:
    arch = dict(DEFAULT_REGRESSOR_ARCH if arch is None else arch)
    if arch.get("type") != "level_regressor_mlp":
        raise ValueError(f"unknown level regressor architecture {arch.get('type')!r}")
    with torch.random.fork_rng(devices=[]):
        return LevelRegressor(int(arch["width"]), int(arch["depth"]), int(arch["in_channels"]), int(arch["resolution"]))


def load_level_regressor(weights_dir: str | pathlib.Path | None = None, verify: bool = True) -> LevelRegressor:
    """Load g(sigma | x) (``digits_level_regressor.*``), checking its sha256 like :func:`load_digits_denoiser`."""
    from safetensors.torch import load_file

    wdir = pathlib.Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    config, w_path = read_verified_config(wdir, REGRESSOR_STEM, verify)
    net = build_regressor(config["arch"])
    net.load_state_dict(load_file(str(w_path)))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    net.config = dict(config, weights_path=str(w_path))
    return net


def regressor_nll(net: LevelRegressor, x0: torch.Tensor, ln_sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-item Gaussian negative log-likelihood of ln sigma for the states x0 + sigma n."""
    x = x0 + ln_sigma.exp().reshape(-1, 1, 1, 1) * noise
    return -net.log_prob(x, ln_sigma.exp())


@torch.no_grad()
def regressor_validation(net: LevelRegressor, x0: torch.Tensor, schedule: dict, seed: int, repeats: int = 8) -> dict:
    """NLL and mean |mu(x) - ln sigma| on a fixed seeded batch drawn from the training law of the levels."""
    gen = torch.Generator().manual_seed(int(seed))
    x0 = x0.repeat(repeats, 1, 1, 1)
    ln_sigma = torch.randn(x0.shape[0], generator=gen) * float(schedule["p_std"]) + float(schedule["p_mean"])
    noise = torch.randn(x0.shape, generator=gen)
    nll = regressor_nll(net, x0, ln_sigma, noise)
    mu, _ = net(x0 + ln_sigma.exp().reshape(-1, 1, 1, 1) * noise)
    return {"nll": float(nll.mean()), "mean_abs_log_error": float((mu - ln_sigma).abs().mean())}

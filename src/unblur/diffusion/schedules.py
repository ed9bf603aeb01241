"""The discrete noise schedule of DDPM (Ho et al. 2020) as latent diffusion models train with it.

T training timesteps (1000 for Stable Diffusion) with cumulative signal levels abar_0 > ... > abar_{T-1}:

    z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I)

The network predicts ``eps`` ("epsilon") or ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) z_0``
("v_prediction", Salimans & Ho 2022; SD 2.x's 768-pixel models, while SD 2.1-512 predicts eps).
Latents are (B, C, h, w); timesteps are integers in [0, T). The arithmetic follows diffusers' DDPM/DDIM
schedulers operation for operation, so models trained with those sample the same latents here, bit for bit.
"""

from __future__ import annotations

import torch

PREDICTIONS = ("epsilon", "v_prediction")
#: how :meth:`NoiseSchedule.timesteps` picks the sampling timesteps (see there)
SPACINGS = ("leading", "linspace")


class NoiseSchedule:
    """``alphas_cumprod``: (T,) float32, abar_t. ``prediction``: what the network predicts (see above).
    ``clip`` > 0: the clean estimate is clamped to [-clip, clip] while sampling (diffusers' ``clip_sample``,
    on by default for its DDPM scheduler, hence for our small models); 0: no clamping.
    ``steps_offset``: added to every sampling timestep (SD 2.x's configs: 1). ``spacing``: how the sampling
    timesteps are picked, ``"leading"`` (diffusers' default) or ``"linspace"`` (see :meth:`timesteps`)."""

    def __init__(
        self,
        alphas_cumprod: torch.Tensor,
        prediction: str = "epsilon",
        clip: float = 0.0,
        steps_offset: int = 0,
        spacing: str = "leading",
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
        self.alphas_cumprod = alphas_cumprod.float()
        self.prediction, self.clip, self.steps_offset = prediction, clip, steps_offset
        self.spacing = spacing

    @property
    def spacing(self) -> str:
        return self._spacing

    @spacing.setter
    def spacing(self, value: str) -> None:
        if value not in SPACINGS:
            raise ValueError(f"timestep spacing must be one of {', '.join(SPACINGS)}, got {value!r}")
        self._spacing = value

    @classmethod
    def scaled_linear(cls, steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012, **kwargs) -> NoiseSchedule:
        """Stable Diffusion's schedule: sqrt(beta_t) linear from sqrt(beta_start) to sqrt(beta_end)."""
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float32) ** 2
        return cls(torch.cumprod(1.0 - betas, dim=0), **kwargs)

    @classmethod
    def linear(cls, steps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02, **kwargs) -> NoiseSchedule:
        """DDPM's schedule: beta_t linear from beta_start to beta_end."""
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float32)
        return cls(torch.cumprod(1.0 - betas, dim=0), **kwargs)

    @classmethod
    def from_config(cls, config: dict) -> NoiseSchedule:
        """From a diffusers scheduler config (``scheduler/scheduler_config.json`` of a Stable Diffusion folder).
        Defaults are those of diffusers' DDPM scheduler; what we do not implement is refused by name."""
        unsupported = {
            "beta_schedule": config.get("beta_schedule", "linear") not in ("linear", "scaled_linear"),
            "trained_betas": config.get("trained_betas") is not None,
            "thresholding": bool(config.get("thresholding", False)),
            "rescale_betas_zero_snr": bool(config.get("rescale_betas_zero_snr", False)),
            "timestep_spacing": config.get("timestep_spacing", "leading") != "leading",
        }
        bad = [f"{key}={config.get(key)!r}" for key, refused in unsupported.items() if refused]
        if bad:
            raise ValueError(f"scheduler config: {', '.join(bad)} is not supported (linear or scaled_linear betas, leading spacing)")
        make = cls.scaled_linear if config.get("beta_schedule", "linear") == "scaled_linear" else cls.linear
        return make(
            config.get("num_train_timesteps", 1000),
            config.get("beta_start", 0.0001),
            config.get("beta_end", 0.02),
            prediction=config.get("prediction_type", "epsilon"),
            clip=config.get("clip_sample_range", 1.0) if config.get("clip_sample", True) else 0.0,
            steps_offset=config.get("steps_offset", 0),
        )

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def _levels(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar at timesteps ``t`` (B,), shaped (B, 1, 1, 1) in ``like``'s device and dtype."""
        return self.alphas_cumprod.to(like.device, like.dtype)[t.to(like.device)].view(-1, *[1] * (like.dim() - 1))

    # -- training ----------------------------------------------------------------------------------------
    def add_noise(self, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t for clean latents ``z0``, noise of the same shape and timesteps ``t`` (B,)."""
        a = self._levels(t, z0)
        return a**0.5 * z0 + (1 - a) ** 0.5 * noise

    def target(self, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network learns to predict at (z_t, t): the noise, or v."""
        if self.prediction == "epsilon":
            return noise
        a = self._levels(t, z0)
        return a**0.5 * noise - (1 - a) ** 0.5 * z0

    def predicted_x0(self, z_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The one-step estimate of the clean latent from the network's ``output`` at (z_t, t), t (B,) (unclamped)."""
        return self.split(output, z_t, self._levels(t, z_t))[0]

    # -- sampling ----------------------------------------------------------------------------------------
    def split(self, output: torch.Tensor, z_t: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean estimate x0, noise estimate eps) from the network's ``output`` at z_t, ``a`` = abar_t
        (a scalar tensor or broadcastable to z_t)."""
        if self.prediction == "epsilon":
            return (z_t - (1 - a) ** 0.5 * output) / a**0.5, output
        return a**0.5 * z_t - (1 - a) ** 0.5 * output, a**0.5 * output + (1 - a) ** 0.5 * z_t

    def timesteps(self, steps: int) -> list[tuple[int, int]]:
        """The ``steps`` sampling steps as (t, previous t) pairs, from high noise down; previous t < 0 means the
        clean end.

        ``"leading"`` spacing (diffusers'): t = k * (T // steps) + steps_offset, previous t = t - T // steps.
        ``"linspace"``: ``steps`` timesteps evenly from T - 1 down to 0, rounded, each step going to the next
        one (the respacing of improved DDPM, which DeblurDiff's authors sample with: their
        ``utils/sampler.py``, ``space_timesteps``; positions accumulated in floating point and rounded half
        to even, as there, so that the same timesteps come out); ``steps_offset`` is not used."""
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be from 1 to {self.num_train_timesteps}, got {steps}")
        if self.spacing == "linspace":
            ts = sorted(set(_respaced(self.num_train_timesteps, steps)), reverse=True)
            return list(zip(ts, ts[1:] + [-1]))
        stride = self.num_train_timesteps // steps
        ts = [k * stride + self.steps_offset for k in reversed(range(steps))]
        return [(t, t - stride) for t in ts]

    def level(self, t: int) -> torch.Tensor:
        """abar_t as a scalar float32 tensor; 1 for t < 0 (the clean end, DDIM's ``set_alpha_to_one``)."""
        return self.alphas_cumprod[t] if t >= 0 else torch.tensor(1.0)


def _respaced(total: int, steps: int) -> list[int]:
    """``steps`` timesteps of ``total``, evenly from 0 to total - 1: positions k * (total - 1) / (steps - 1) summed
    up step by step in floating point and rounded (Python's round: half to even)."""
    if steps == 1:
        return [0]
    stride, position, out = (total - 1) / (steps - 1), 0.0, []
    for _ in range(steps):
        out.append(round(position))
        position += stride
    return out

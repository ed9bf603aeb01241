"""Samplers for :class:`~unblur.diffusion.schedules.NoiseSchedule` models, in k-diffusion's style: short
functions with one signature, chosen by name (:data:`SAMPLERS`, a method's ``sampler`` setting).

    sampler(predict, z, schedule, steps, generator=None, callback=None, skip=0) -> z_0

``predict(z_t, t)``: the network's output (noise or v) for the latent z_t (B, C, h, w) at timestep t
(a 0-dim long tensor on z's device). ``z``: the start, pure noise N(0, I). ``generator``: a CPU
generator for the noise a stochastic sampler adds at every step (drawn on the CPU and moved, so a
seed gives the same result on any device). ``callback(info)`` runs after every step with
``{"step": i (1-based), "steps": n, "t": t, "latent": z_{t-1}, "x0": the step's clean estimate}``:
progress bars count steps with it, a preview can decode ``x0``.

``skip`` > 0: the first ``skip`` of the ``steps`` steps are left out and ``z`` is the latent at the timestep
of the step after them (a noised image: SDEdit's start, :meth:`unblur.methods.latent.LatentMethod.render`);
the callback then counts the n = steps - skip steps that run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unblur.diffusion.schedules import NoiseSchedule

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _estimates(predict: Predict, z: torch.Tensor, schedule: NoiseSchedule, t: int):
    """(abar_t, clean estimate x0 clamped as the schedule says, noise estimate eps) at (z, t)."""
    a = schedule.level(t)
    x0, eps = schedule.split(predict(z, torch.tensor(t, device=z.device)), z, a)
    if schedule.clip:
        x0 = x0.clamp(-schedule.clip, schedule.clip)  # eps stays the network's: diffusers' DDIM does the same
    return a, x0, eps


def _plan(schedule: NoiseSchedule, steps: int, skip: int) -> list[tuple[int, int]]:
    """The (t, previous t) pairs a sampler runs: the last ``steps - skip`` of ``steps``."""
    if not 0 <= skip < steps:
        raise ValueError(f"skip must be from 0 to {steps - 1} (steps - 1), got {skip}")
    return schedule.timesteps(steps)[skip:]


@torch.no_grad()
def ddim(
    predict: Predict, z: torch.Tensor, schedule: NoiseSchedule, steps: int, generator=None, callback=None, skip: int = 0
) -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021, eta = 0): z_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps.
    ``generator`` is not used (the start ``z`` is the only randomness)."""
    plan = _plan(schedule, steps, skip)
    for i, (t, prev) in enumerate(plan, start=1):
        a, x0, eps = _estimates(predict, z, schedule, t)
        a_prev = schedule.level(prev)
        z = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        if callback is not None:
            callback({"step": i, "steps": len(plan), "t": t, "latent": z, "x0": x0})
    return z


@torch.no_grad()
def ddpm(
    predict: Predict, z: torch.Tensor, schedule: NoiseSchedule, steps: int, generator=None, callback=None, skip: int = 0
) -> torch.Tensor:
    """Ancestral DDPM (Ho et al. 2020) on respaced timesteps, as DeblurDiff's authors sample: z_prev is drawn
    from the posterior q(z_prev | z_t, x0), its mean

        sqrt(abar_prev) beta / (1 - abar_t) x0 + sqrt(alpha) (1 - abar_prev) / (1 - abar_t) z_t,

    alpha = abar_t / abar_prev, beta = 1 - alpha, its variance beta (1 - abar_prev) / (1 - abar_t) ("fixed small");
    the last step adds no noise."""
    plan = _plan(schedule, steps, skip)
    for i, (t, prev) in enumerate(plan, start=1):
        a, x0, _ = _estimates(predict, z, schedule, t)
        a_prev = schedule.level(prev)
        alpha = a / a_prev
        beta = 1 - alpha
        z = (a_prev**0.5 * beta) / (1 - a) * x0 + alpha**0.5 * (1 - a_prev) / (1 - a) * z
        if t > 0:
            variance = ((1 - a_prev) / (1 - a) * beta).clamp(min=1e-20)
            z = z + variance**0.5 * torch.randn(z.shape, generator=generator).to(z)
        if callback is not None:
            callback({"step": i, "steps": len(plan), "t": t, "latent": z, "x0": x0})
    return z


#: name -> sampler; a method's ``sampler`` setting picks one
SAMPLERS: dict[str, Callable] = {"ddim": ddim, "ddpm": ddpm}


def get_sampler(name: str) -> Callable:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)})")
    return SAMPLERS[name]

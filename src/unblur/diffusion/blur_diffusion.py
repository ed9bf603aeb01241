"""BlurDM's dual noise-and-blur diffusion in a latent space: the schedule and the deterministic sampler.

The forward process models a longer and longer exposure plus noise. With exposures
alpha_0 = 1 < alpha_1 < ... < alpha_T and noise variances beta_1..beta_T, one step is
(as in the authors' code)

    z_t = (alpha_{t-1} / alpha_t) * (z_{t-1} + sqrt(beta_t) * eps_t) + e_t / alpha_t

where e_t is the blur residual: the light gathered between exposures alpha_{t-1} and
alpha_t. Unrolled, z_t = (z_0 + sum_{i<=t} e_i) / alpha_t + bbeta_t * eps with
bbeta_t = sqrt(sum_{i<=t} (alpha_{i-1} / alpha_t)^2 beta_i): the mean drifts from the
sharp latent z_0 to the blurred one, and z_T = z_blur + bbeta_T * eps.

The reverse step undoes one exposure increment and the matching noise with two
estimates (blur residual e_hat, noise eps_hat):

    z_{t-1} = (alpha_t z_t - e_hat) / alpha_{t-1} - (alpha_t bbeta_t / alpha_{t-1} - bbeta_{t-1}) eps_hat

With exact estimates it returns z_0 exactly (bbeta_0 = 0). Since z_t = mean_t + bbeta_t * eps,
each step's noise-free estimate of the mean is z_{t-1} - bbeta_{t-1} * eps_hat (what BlurDM's
optional exposure loss supervises). Latents are (B, D) tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BlurSchedule:
    """T steps; exposure alpha_t = linspace(1, alpha_end, T + 1); noise beta_t = linspace(0, beta_end, T)
    (beta_1 = 0: the first step only blurs). The authors use T = 5, alpha_end = 2, beta_end = 0.02."""

    steps: int = 5
    alpha_end: float = 2.0
    beta_end: float = 0.02

    @property
    def alphas(self) -> torch.Tensor:
        """(T + 1,) float64: alpha_0 .. alpha_T."""
        return torch.linspace(1.0, self.alpha_end, self.steps + 1, dtype=torch.float64)

    @property
    def exposure_fractions(self) -> torch.Tensor:
        """(T + 1,) float64: the share of the blur residual gathered by step t,
        (alpha_t - alpha_0) / (alpha_T - alpha_0), from 0 (the sharp image) to 1 (the blurred one)."""
        a = self.alphas
        return (a - a[0]) / (a[-1] - a[0])

    @property
    def betas(self) -> torch.Tensor:
        """(T + 1,) float64 with betas[0] = 0 unused, betas[t] = beta_t."""
        return torch.cat(
            [torch.zeros(1, dtype=torch.float64), torch.linspace(0.0, self.beta_end, self.steps, dtype=torch.float64)]
        )

    @property
    def bar_betas(self) -> torch.Tensor:
        """(T + 1,) float64: bbeta_0 = 0 .. bbeta_T, the noise level of z_t."""
        a, b = self.alphas, self.betas
        out = [torch.zeros((), dtype=torch.float64)]
        for t in range(1, self.steps + 1):
            out.append(torch.sqrt(sum((a[i - 1] / a[t]) ** 2 * b[i] for i in range(1, t + 1))))
        return torch.stack(out)

    def forward_step(self, z_prev: torch.Tensor, t: int, residual: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One forward step t-1 -> t (used to check the closed form, and by nothing at run time)."""
        a, b = self.alphas, self.betas
        return (float(a[t - 1] / a[t]) * (z_prev + float(b[t].sqrt()) * eps)) + residual / float(a[t])

    def marginal(self, z0: torch.Tensor, total_residual: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        """Closed form of z_t given the sharp latent, the sum of residuals e_1..e_t and one noise draw."""
        return (z0 + total_residual) / float(self.alphas[t]) + float(self.bar_betas[t]) * eps

    def reverse_step(self, z_t: torch.Tensor, t: int, residual_hat: torch.Tensor, eps_hat: torch.Tensor) -> torch.Tensor:
        a, bb = self.alphas, self.bar_betas
        ratio = float(a[t] / a[t - 1])
        return (float(a[t]) * z_t - residual_hat) / float(a[t - 1]) - (ratio * float(bb[t]) - float(bb[t - 1])) * eps_hat


Estimator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sample(
    schedule: BlurSchedule,
    residual_net: Estimator,
    noise_net: Estimator,
    z_blur: torch.Tensor,
    noise: torch.Tensor | None = None,
    trajectory: list | None = None,
    means: list | None = None,
) -> torch.Tensor:
    """Run the T reverse steps from z_T = z_blur + bbeta_T * noise; returns z_0, (B, D).

    The estimators take (z_blur, t / T as a (B, 1) tensor, z_t) and return (B, D).
    ``noise`` defaults to zeros (the mean path: deterministic, no generator needed);
    ``trajectory``, if a list, receives every z_t from T down to 0; ``means``, if a list, every
    step's noise-free estimate z_{t-1} - bbeta_{t-1} * eps_hat, t = T down to 1 (the last is z_0).
    """
    bb = schedule.bar_betas
    z = z_blur + float(bb[-1]) * (noise if noise is not None else torch.zeros_like(z_blur))
    if trajectory is not None:
        trajectory.append(z)
    for t in range(schedule.steps, 0, -1):
        level = torch.full((z.shape[0], 1), t / schedule.steps, dtype=z.dtype, device=z.device)
        residual_hat, eps_hat = residual_net(z_blur, level, z), noise_net(z_blur, level, z)
        z = schedule.reverse_step(z, t, residual_hat, eps_hat)
        if trajectory is not None:
            trajectory.append(z)
        if means is not None:
            means.append(z - float(bb[t - 1]) * eps_hat)
    return z

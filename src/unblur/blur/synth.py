"""Synthetic blurred/sharp pairs.

Preset ``uniform-kernel``: one camera-shake kernel per image, applied in linear
light (gamma 2.2), Gaussian read noise added to the stored values, 8-bit
quantisation, as the public ``val_uniform`` benchmark is made. The richer
presets (non-uniform camera shake, saturation, JPEG) build on the same pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unblur.blur.camera import gamma_to_linear, linear_to_gamma
from unblur.blur.kernels import embed, motion_kernel


def convolve(x: torch.Tensor, kernels: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Convolve each image of a batch with its own kernel.

    x: (B, C, H, W); kernels: (B, k, k) with k odd, or (k, k) for all.
    padding: ``"valid"`` returns (B, C, H - k + 1, W - k + 1) with no border
    assumption; ``"reflect"``/``"replicate"``/``"circular"`` keep (H, W).
    A true convolution (kernel flipped), as in the formation model B = k * S.
    """
    b, c, h, w = x.shape
    if kernels.dim() == 2:
        kernels = kernels.expand(b, -1, -1)
    k = kernels.shape[-1]
    if padding != "valid":
        p = k // 2
        x = F.pad(x, (p, p, p, p), mode=padding)
    weight = kernels.flip(-1, -2).to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), weight, groups=b * c)
    return out.reshape(b, c, *out.shape[-2:])


@dataclass(frozen=True)
class UniformKernelBlur:
    """One random-walk motion kernel per image, in linear light, plus noise and 8-bit quantisation."""

    min_kernel: int = 9
    max_kernel: int = 25
    max_noise: float = 0.01
    gamma: float = 2.2
    quantise_bits: int | None = 8

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw the blur of one image: ``kernel`` ((max_kernel, max_kernel) float32), ``size``, ``noise_sigma``."""
        size = int(rng.choice(np.arange(self.min_kernel, self.max_kernel + 1, 2)))
        kernel = embed(motion_kernel(size, rng), self.max_kernel)
        return {"kernel": kernel, "size": size, "noise_sigma": float(rng.uniform(0, self.max_noise))}

    def render(
        self,
        sharp: torch.Tensor,
        kernels: torch.Tensor,
        noise_sigma: torch.Tensor,
        generator: torch.Generator | None = None,
        padding: str = "reflect",
    ) -> torch.Tensor:
        """Blur a batch of stored (gamma-encoded) images in [0, 1].

        sharp: (B, 3, H, W); kernels: (B, k, k); noise_sigma: (B,).
        Returns (B, 3, H', W') in [0, 1]; H' = H - k + 1 with ``padding="valid"``, else H.
        """
        linear = gamma_to_linear(sharp, self.gamma)
        blurred = linear_to_gamma(convolve(linear, kernels, padding), self.gamma)
        noise = torch.randn(blurred.shape, generator=generator, dtype=blurred.dtype).to(blurred.device)
        blurred = (blurred + noise * noise_sigma.view(-1, 1, 1, 1).to(blurred)).clamp(0, 1)
        if self.quantise_bits:
            top = 2**self.quantise_bits - 1
            blurred = torch.round(blurred * top) / top
        return blurred


PRESETS = {"uniform-kernel": UniformKernelBlur}


def blur_image(sharp: np.ndarray, rng: np.random.Generator, preset: str = "uniform-kernel") -> tuple[np.ndarray, dict]:
    """Blur one whole image: sharp float32 (H, W, 3) in [0, 1] -> (blurred (H, W, 3), metadata).

    Borders are reflected. ``metadata`` holds the kernel (cropped to its true size) and the noise level.
    """
    spec = PRESETS[preset]()
    draw = spec.sample(rng)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    x = torch.from_numpy(np.ascontiguousarray(sharp.transpose(2, 0, 1)))[None]
    k = torch.from_numpy(draw["kernel"])[None]
    out = spec.render(x, k, torch.tensor([draw["noise_sigma"]]), generator=gen)
    o = (spec.max_kernel - draw["size"]) // 2
    meta = {
        "preset": preset,
        "kernel": draw["kernel"][o : o + draw["size"], o : o + draw["size"]],
        "noise_sigma": draw["noise_sigma"],
    }
    return out[0].permute(1, 2, 0).numpy(), meta

"""Camera response: mapping between stored (display) values and linear light.

Blur is an average of light over the exposure, so it must be computed on linear
values; photos are stored gamma-encoded. All functions take and return tensors or
arrays with values in [0, 1] and keep their shape.
"""

from __future__ import annotations

import torch


def gamma_to_linear(x: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """Decode a pure power-law response (gamma 2.2 is the field's usual approximation)."""
    return x.clamp(0, 1) ** gamma


def linear_to_gamma(x: torch.Tensor, gamma: float = 2.2) -> torch.Tensor:
    """Encode linear light with a power law; values outside [0, 1] are clipped (sensor saturation)."""
    return x.clamp(0, 1) ** (1.0 / gamma)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """The IEC 61966-2-1 sRGB decoding curve."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The IEC 61966-2-1 sRGB encoding curve; values outside [0, 1] are clipped."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)

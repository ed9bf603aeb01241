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


def saturate(linear: torch.Tensor, gain: float) -> torch.Tensor:
    """Scene brighter than the sensor: scale linear light by ``gain`` (>= 1) and clip at 1.

    Applied to the *sharp* scene before averaging would be wrong: a light source that
    saturates streaks through the blur at full brightness only if the clipping happens
    after the exposure is integrated (RSBlur), so call this on the integrated image.
    """
    return (linear * gain).clamp(0, 1)


def poisson_gaussian_noise(
    linear: torch.Tensor, shot: float, read: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sensor noise in linear light: variance ``shot * x + read**2`` (Gaussian approximation of
    Poisson photon noise plus read noise), clipped to [0, 1]."""
    std = torch.sqrt(shot * linear.clamp(min=0) + read**2)
    noise = torch.randn(linear.shape, generator=generator, dtype=linear.dtype).to(linear.device)
    return (linear + std * noise).clamp(0, 1)


def jpeg(display: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip (B, 3, H, W) or (3, H, W) display values through JPEG at ``quality`` (Pillow, 4:2:0)."""
    import io

    import numpy as np
    from PIL import Image

    batch = display if display.dim() == 4 else display[None]
    out = []
    for img in batch:
        arr = np.round(img.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
        out.append(torch.from_numpy(np.asarray(Image.open(buf), dtype=np.float32) / 255).permute(2, 0, 1))
    result = torch.stack(out).to(display.device, display.dtype)
    return result if display.dim() == 4 else result[0]

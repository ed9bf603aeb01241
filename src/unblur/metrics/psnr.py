"""PSNR as the deblurring papers report it.

Default protocol (GoPro/HIDE, = MATLAB ``psnr`` on uint8 images): RGB quantised to
8 bits, no border crop. Options: ``crop_border`` pixels removed on each side, and
``y_channel`` = luma only, with MATLAB's ``rgb2ycbcr`` (BT.601, Y in [16, 235]).
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8_scale(a: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> float64 in [0, 255] rounded to integers (as saving to 8 bits would);
    integer arrays are taken as 8-bit values."""
    if np.issubdtype(a.dtype, np.floating):
        return np.round(np.clip(a, 0, 1) * 255).astype(np.float64)
    if a.dtype != np.uint8:
        raise ValueError(f"integer images must be uint8, got {a.dtype}")
    return a.astype(np.float64)


def rgb_to_y(x255: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luma of (H, W, 3) values in [0, 255]: Y in [16, 235], shape (H, W, 1)."""
    return (16.0 + x255 @ np.array([65.481, 128.553, 24.966]) / 255.0)[..., None]


def prepare(pred: np.ndarray, target: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and ranges, quantise to 8-bit values, crop, and convert to Y if asked: (H', W', C) float64."""
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {pred.shape} vs {target.shape}")
    if pred.ndim != 3 or pred.shape[2] not in (1, 3):
        raise ValueError(f"expected (H, W, 1 or 3) images, got shape {pred.shape}")
    for name, a in (("pred", pred), ("target", target)):
        if np.issubdtype(a.dtype, np.floating) and (a.min() < -0.01 or a.max() > 1.01):
            raise ValueError(f"{name} has values outside [0, 1] ({a.min():.3g}..{a.max():.3g}): pass floats in [0, 1] or uint8")
    p, t = to_uint8_scale(pred), to_uint8_scale(target)
    if crop_border:
        p, t = p[crop_border:-crop_border, crop_border:-crop_border], t[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and p.shape[2] == 3:
        p, t = rgb_to_y(p), rgb_to_y(t)
    return p, t


def psnr(pred: np.ndarray, target: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB of two (H, W, C) images, floats in [0, 1] or uint8; identical images give ``inf``."""
    p, t = prepare(pred, target, crop_border, y_channel)
    mse = np.mean((p - t) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def psnr_tensor(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) of (B, C, H, W) float tensors in [0, 1], quantised to 8 bits (for training)."""
    p = torch.round(pred.clamp(0, 1) * 255)
    t = torch.round(target.clamp(0, 1) * 255)
    mse = ((p - t) ** 2).flatten(1).mean(1).double()
    return 10 * torch.log10(255.0**2 / mse)

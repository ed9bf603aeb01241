"""PSNR as the deblurring papers report it: RGB quantised to 8 bits, no border crop
(MATLAB's ``psnr`` on uint8 images)."""

from __future__ import annotations

import numpy as np
import torch


def psnr(pred: np.ndarray, target: np.ndarray, bits: int = 8) -> float:
    """PSNR in dB of two images with values in [0, 1] (or integer arrays of ``bits`` bits).

    Float inputs are rounded to ``bits`` bits first, as saving to PNG would do.
    Identical images give ``inf``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: {pred.shape} vs {target.shape}")
    top = 2**bits - 1

    def q(a):
        return np.round(np.clip(a, 0, 1) * top) if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)

    mse = np.mean((q(pred).astype(np.float64) - q(target).astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(top**2 / mse))


def psnr_tensor(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) of (B, C, H, W) float tensors in [0, 1], quantised to 8 bits."""
    p = torch.round(pred.clamp(0, 1) * 255)
    t = torch.round(target.clamp(0, 1) * 255)
    mse = ((p - t) ** 2).flatten(1).mean(1).double()
    return 10 * torch.log10(255.0**2 / mse)

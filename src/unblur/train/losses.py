"""Image losses. Inputs are (B, C, H, W) tensors in [0, 1]; outputs are scalars."""

from __future__ import annotations

import torch


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """sqrt((x - y)^2 + eps^2), averaged: L1 that is smooth at zero."""
    return torch.sqrt((pred - target) ** 2 + eps**2).mean()


def fft_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance between 2-D spectra (real and imaginary parts), as in MIMO-UNet."""
    a, b = torch.fft.rfft2(pred.float()), torch.fft.rfft2(target.float())
    return (torch.view_as_real(a) - torch.view_as_real(b)).abs().mean()

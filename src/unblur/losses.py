"""Image losses, for the training engine and for the methods that compute their own loss terms.

Inputs are (B, C, H, W) tensors in [0, 1]; outputs are scalars.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """sqrt((x - y)^2 + eps^2), averaged: L1 that is smooth at zero."""
    return torch.sqrt((pred - target) ** 2 + eps**2).mean()


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()


def psnr_loss(pred: torch.Tensor, target: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """10 log10(MSE + floor) of each image, averaged over the batch: minus the PSNR (dB, peak 1) that the
    benchmarks average, so every image counts by its dB and not by its squared error (a nearly sharp crop
    counts as much as a badly blurred one). ``floor`` caps an image's worth at 60 dB, so crops that already
    come back exact do not take over the gradient (it grows as 1 / MSE). NAFNet's ``PSNRLoss``
    (megvii-research/NAFNet, basicsr/models/losses/losses.py line 90) is the same up to its 1e-8 floor."""
    mse = (pred - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(mse + floor).mean()


def fft_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance between the 2-D spectra (real and imaginary parts) of each channel, as in MIMO-UNet."""
    a, b = torch.fft.rfft2(pred.float()), torch.fft.rfft2(target.float())
    return (torch.view_as_real(a) - torch.view_as_real(b)).abs().mean()


def fft_height_charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier distance between the 1-D spectra of every column (FFT along the height, real and
    imaginary parts): BlurDM's frequency loss as the authors' training scripts compute it."""
    a, b = torch.fft.fft(pred.float(), dim=-2), torch.fft.fft(target.float(), dim=-2)
    return charbonnier(torch.view_as_real(a), torch.view_as_real(b), eps)


#: ``loss.pixel``: the pixel term
PIXEL_LOSSES = ("charbonnier", "l1", "psnr")

#: ``loss.fft``: the frequency term weighted by ``loss.fft_weight``
FFT_LOSSES = ("2d-l1", "height-charbonnier")


def downscale_like(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """The target at a coarse output's size (area averaging, as the coarse inputs are made)."""
    return target if target.shape[-2:] == pred.shape[-2:] else F.interpolate(target, size=pred.shape[-2:], mode="area")


class ImageLoss:
    """The configured image loss: ``pixel`` (charbonnier | l1 | psnr, minus each image's PSNR in dB) + fft_weight * the ``fft`` term (2d-l1:
    L1 on 2-D spectra, as MIMO-UNet; height-charbonnier: Charbonnier on 1-D spectra along the height, as
    BlurDM's authors) + perceptual_weight * LPIPS (only with local LPIPS weights, see
    :mod:`unblur.metrics.lpips`), summed over a list of multi-scale outputs (finest first) when the model
    gives several. ``clamp``: outputs are clamped to [0, 1] before every term (BlurDM's authors clamp to
    their [-0.5, 0.5]), so pixels already past the range get no gradient.
    """

    def __init__(self, cfg: dict, device):
        if cfg["pixel"] not in PIXEL_LOSSES:
            raise ValueError(f"loss.pixel must be one of {', '.join(PIXEL_LOSSES)}, got {cfg['pixel']!r}")
        if cfg.get("fft", "2d-l1") not in FFT_LOSSES:
            raise ValueError(f"loss.fft must be one of {FFT_LOSSES}, got {cfg['fft']!r}")
        self.cfg = cfg
        self.multiscale = cfg["multiscale"]  # sum over every scale of a multi-scale output (MIMO-UNet+)
        self.perceptual = None
        if cfg["perceptual_weight"]:
            from unblur.metrics.lpips import load_lpips

            self.perceptual = load_lpips(device).requires_grad_(False)  # raises with the reason when absent

    def single(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if c.get("clamp"):
            pred = pred.clamp(0, 1)
        if c["pixel"] == "charbonnier":
            loss = charbonnier(pred, target, c["charbonnier_eps"])
        else:
            loss = psnr_loss(pred, target) if c["pixel"] == "psnr" else l1(pred, target)
        if c["fft_weight"]:
            if c.get("fft", "2d-l1") == "height-charbonnier":
                freq = fft_height_charbonnier(pred, target, c["charbonnier_eps"])
            else:
                freq = fft_l1(pred, target)
            loss = loss + c["fft_weight"] * freq
        if self.perceptual is not None:
            loss = loss + c["perceptual_weight"] * self.perceptual(pred, target).mean()
        return loss

    def __call__(self, preds, target: torch.Tensor) -> torch.Tensor:
        if isinstance(preds, torch.Tensor):
            return self.single(preds.float(), target)
        return sum(self.single(p.float(), downscale_like(target, p)) for p in preds)

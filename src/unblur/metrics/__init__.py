"""Image quality metrics, each computed as the field's papers compute it."""

from unblur.metrics.psnr import psnr, psnr_tensor
from unblur.metrics.ssim import ssim

__all__ = ["psnr", "psnr_tensor", "ssim"]

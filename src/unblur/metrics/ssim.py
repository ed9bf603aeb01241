"""SSIM (Wang et al. 2004) in the variants the deblurring literature uses.

All variants: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, on
8-bit-quantised values, computed per channel and averaged. They differ at the borders:

- ``"basicsr"``: only windows that fit inside the image ("valid"), as BasicSR's
  ``calculate_ssim`` and scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)`` do; the common Python figure.
- ``"matlab"``: MATLAB's ``ssim``: the filtered statistics use replicate padding and the
  map is averaged over every pixel (no crop).

Name the variant in every report: the two differ by ~1e-3 on typical images.
"""

from __future__ import annotations

import numpy as np

from unblur.metrics.psnr import prepare

VARIANTS = ("basicsr", "matlab")


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def ssim_map(p: np.ndarray, t: np.ndarray, variant: str = "basicsr") -> np.ndarray:
    """SSIM map of two (H, W) arrays of values in [0, 255]: (H - 10, W - 10) for ``basicsr``, (H, W) for ``matlab``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown SSIM variant '{variant}' (known: {', '.join(VARIANTS)})")
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = gaussian_window()[5]  # the 2-D window is separable: filter rows, then columns
    g = g / g.sum()
    # "valid" = filter with any border, then drop the 5 pixels whose windows leave the image
    border = cv2.BORDER_REPLICATE if variant == "matlab" else cv2.BORDER_REFLECT

    def blur(a):
        out = cv2.sepFilter2D(a, cv2.CV_64F, g, g, borderType=border)
        return out if variant == "matlab" else out[5:-5, 5:-5]

    mu_p, mu_t = blur(p), blur(t)
    var_p, var_t, cov = blur(p * p) - mu_p**2, blur(t * t) - mu_t**2, blur(p * t) - mu_p * mu_t
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))


def ssim(pred: np.ndarray, target: np.ndarray, variant: str = "basicsr", crop_border: int = 0, y_channel: bool = False) -> float:
    """Mean SSIM of two (H, W, C) images (floats in [0, 1] or uint8), averaged over channels."""
    p, t = prepare(pred, target, crop_border, y_channel)
    if min(p.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {p.shape[1]}x{p.shape[0]}")
    return float(np.mean([ssim_map(p[..., c], t[..., c], variant).mean() for c in range(p.shape[2])]))

"""The RealBlur evaluation protocol (Rim et al., ECCV 2020).

Real blurred/sharp pairs are taken by two cameras through a beam splitter, so a
result is first matched to the ground truth: its intensity is scaled by least
squares, then it is aligned by an ECC homography estimated on grey images (100
iterations), and PSNR/SSIM are computed only where the warped image has data.
Images are float (H, W, 3) in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unblur.metrics.psnr import to_uint8_scale
from unblur.metrics.ssim import ssim_map


@dataclass
class Aligned:
    image: np.ndarray  # (H, W, 3) in [0, 1]: the result, scaled and warped onto the ground truth
    mask: np.ndarray  # (H, W) bool: pixels the warped result covers
    scale: float  # intensity factor applied
    warp: np.ndarray  # (3, 3) homography, ground truth -> result coordinates


def align(pred: np.ndarray, gt: np.ndarray, iterations: int = 100) -> Aligned:
    import cv2

    pred, gt = pred.astype(np.float32), gt.astype(np.float32)
    scale = float((pred * gt).sum() / max((pred * pred).sum(), 1e-12))
    scaled = np.clip(pred * scale, 0, 1)
    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 0)
    grey = lambda a: cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    try:
        _, warp = cv2.findTransformECC(grey(gt), grey(scaled), warp, cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
    except cv2.error:
        pass  # ECC did not converge (e.g. a flat image): evaluate unaligned, as the identity warp
    h, w = gt.shape[:2]
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    image = cv2.warpPerspective(scaled, warp, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpPerspective(np.ones((h, w), np.float32), warp, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    return Aligned(np.clip(image, 0, 1), mask > 0.999, scale, warp)


def realblur_psnr_ssim(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Masked PSNR and SSIM (``basicsr`` windows, each window kept if its centre is covered) after alignment."""
    a = align(pred, gt)
    p, t = to_uint8_scale(a.image), to_uint8_scale(gt)
    m = a.mask
    mse = ((p - t) ** 2)[m].mean()
    psnr = float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
    inner = m[5:-5, 5:-5]
    ssim = float(np.mean([ssim_map(p[..., c], t[..., c], "basicsr")[inner].mean() for c in range(3)]))
    return psnr, ssim

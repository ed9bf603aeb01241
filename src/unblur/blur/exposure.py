"""Continuous exposure: a blurred photo is the average of the scene over the exposure, in linear light.

The sharp photo is warped to each sub-frame's camera pose (one homography each, from
:mod:`unblur.blur.trajectory`) and the warped copies are averaged. Homographies that
differ across the frame (rotation about the optical axis, forward motion) give
spatially varying blur. Arrays are float32 (H, W, 3) linear values.
"""

from __future__ import annotations

import numpy as np


def warp(linear: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The scene as a sub-frame sees it. ``h`` maps target pixels p to that sub-frame's pixels q,
    so the sub-frame is ``S(q) = T(h^-1 q)``; borders are reflected."""
    import cv2

    height, width = linear.shape[:2]
    return cv2.warpPerspective(
        linear, h.astype(np.float64), (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def expose(linear: np.ndarray, homographies: np.ndarray) -> np.ndarray:
    """Average of the warped sub-frames: the motion-blurred linear image, (H, W, 3)."""
    acc = np.zeros_like(linear, dtype=np.float64)
    for h in homographies:
        acc += warp(linear, h)
    return (acc / len(homographies)).astype(np.float32)


def partial_exposures(linear: np.ndarray, homographies: np.ndarray, fractions) -> list[np.ndarray]:
    """Images exposed from the start of the path to each fraction of it (0 < f <= 1), for BlurDM's
    blur residuals: B_f = mean of the first ceil(f * n) sub-frames. ``fractions`` increasing."""
    n = len(homographies)
    frames = [warp(linear, h) for h in homographies]
    out = []
    for f in fractions:
        k = max(1, int(np.ceil(f * n)))
        out.append(np.mean(frames[:k], axis=0).astype(np.float32))
    return out

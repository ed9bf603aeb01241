"""Continuous exposure: a blurred photo is the average of the scene over the exposure, in linear light.

The sharp photo is warped to each sub-frame's camera pose (one homography each, from
:mod:`unblur.blur.trajectory`) and the warped copies are averaged. Homographies that
differ across the frame (rotation about the optical axis, forward motion) give
spatially varying blur. An optional moving object (:class:`MovingObject`) is a region
of the photo with its own motion on top of the camera's, composited over the
background in every sub-frame. Arrays are float32 (H, W, 3) linear values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def warp(linear: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The scene as a sub-frame sees it. ``h`` maps target pixels p to that sub-frame's pixels q,
    so the sub-frame is ``S(q) = T(h^-1 q)``; borders are reflected."""
    import cv2

    height, width = linear.shape[:2]
    return cv2.warpPerspective(
        linear, h.astype(np.float64), (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


@dataclass(frozen=True)
class MovingObject:
    """A region of the photo that moves by itself during the exposure.

    mask: (H, W) float32 in [0, 1], the object in the sharp sub-frame (soft edges);
    shifts: (n, 2) its own displacement (x, y) in pixels at each sub-frame, zero at the sharp one.
    """

    mask: np.ndarray
    shifts: np.ndarray


def random_object(rng: np.random.Generator, height: int, width: int, n: int, ref: int, max_speed: float = 0.06) -> MovingObject:
    """An elliptical object covering 3-20 % of the frame, moving along a straight line by up to
    ``max_speed`` of the image diagonal over the exposure (a passer-by, a car, a waving hand)."""
    import cv2

    area = rng.uniform(0.03, 0.2) * height * width
    aspect = rng.uniform(0.5, 2.0)
    axes = (max(2, int(np.sqrt(area * aspect / np.pi))), max(2, int(np.sqrt(area / aspect / np.pi))))
    centre = (int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.8) * height))
    mask = np.zeros((height, width), np.float32)
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, thickness=-1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)  # object edges are not pixel-sharp either
    angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.0) * max_speed * np.hypot(height, width)
    t = np.linspace(0.0, 1.0, n) - np.linspace(0.0, 1.0, n)[ref]
    shifts = np.stack([np.cos(angle) * length * t, np.sin(angle) * length * t], axis=1)
    return MovingObject(mask, shifts)


def _background(linear: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What the object hides, guessed by normalised blurring of the visible surroundings:
    without it the object would leave a ghost of itself where it started."""
    import cv2

    sigma = 0.1 * max(linear.shape[:2])
    keep = (1.0 - mask)[..., None]
    num = cv2.GaussianBlur(linear * keep, (0, 0), sigma)
    den = cv2.GaussianBlur(keep[..., 0], (0, 0), sigma)[..., None]
    fill = num / np.maximum(den, 1e-6)
    return (linear * keep + fill * (1.0 - keep)).astype(np.float32)


def _subframes(linear: np.ndarray, homographies: np.ndarray, obj: MovingObject | None):
    """Yield each sub-frame: the warped photo, with the object composited at its own pose."""
    if obj is None:
        for h in homographies:
            yield warp(linear, h)
        return
    background = _background(linear, obj.mask)
    for h, (dx, dy) in zip(homographies, obj.shifts):
        # the object moves in the scene first, then the camera sees it: h . translate(d)
        h_obj = h @ np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
        alpha = warp(obj.mask, h_obj)[..., None]
        yield alpha * warp(linear, h_obj) + (1.0 - alpha) * warp(background, h)


def expose(linear: np.ndarray, homographies: np.ndarray, obj: MovingObject | None = None) -> np.ndarray:
    """Average of the warped sub-frames: the motion-blurred linear image, (H, W, 3)."""
    acc = np.zeros_like(linear, dtype=np.float64)
    for frame in _subframes(linear, homographies, obj):
        acc += frame
    return (acc / len(homographies)).astype(np.float32)


def sharp_frame(linear: np.ndarray, homographies: np.ndarray, ref: int, obj: MovingObject | None = None) -> np.ndarray:
    """The sharp target: sub-frame ``ref`` alone (with the object composited, if any)."""
    if obj is not None:
        obj = MovingObject(obj.mask, obj.shifts[ref : ref + 1])
    return next(_subframes(linear, homographies[ref : ref + 1], obj))


def partial_exposures(
    linear: np.ndarray, homographies: np.ndarray, fractions, obj: MovingObject | None = None
) -> list[np.ndarray]:
    """Images exposed from the start of the path to each fraction of it (0 < f <= 1), for BlurDM's
    blur residuals: B_f = mean of the first ceil(f * n) sub-frames. ``fractions`` increasing."""
    n = len(homographies)
    frames = list(_subframes(linear, homographies, obj))
    out = []
    for f in fractions:
        k = max(1, int(np.ceil(f * n)))
        out.append(np.mean(frames[:k], axis=0).astype(np.float32))
    return out

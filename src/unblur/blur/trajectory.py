"""Camera-shake trajectories, seeded by a ``numpy.random.Generator`` (same seed, same path).

- :func:`random_walk_trajectory`: a 2-D path in the image plane (Boracchi & Foi style),
  rasterised into blur kernels by :mod:`unblur.blur.kernels`.
- :func:`camera_path`: a smooth 6-DoF camera motion (3 rotations + 3 translations)
  sampled at the sub-frames of an exposure, turned into one homography per sub-frame
  by :func:`homographies` for a scene plane at a given depth: rotation blurs every
  pixel, roll and forward motion blur the corners more than the centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def random_walk_trajectory(rng: np.random.Generator, n: int = 64, shake: float = 0.4, jump_prob: float = 0.03) -> np.ndarray:
    """A camera-shake path in the image plane: (n, 2) points, arbitrary scale (callers rescale it).

    The velocity keeps momentum, is perturbed by Gaussian shake, pulled back
    towards the start (a hand corrects itself) and now and then jumps (an abrupt
    tremor); its speed is constant so the exposure spreads evenly along the path.
    """
    angle = rng.uniform(0, 2 * np.pi)
    v = np.array([np.cos(angle), np.sin(angle)])
    pos = np.zeros(2)
    out = np.empty((n, 2))
    for i in range(n):
        out[i] = pos
        dv = shake * rng.standard_normal(2) - 0.02 * pos / max(1.0, np.linalg.norm(pos) / 10)
        if rng.random() < jump_prob:
            dv += 2.0 * v[::-1] * rng.choice([-1, 1]) * rng.uniform(0.5, 1.5)
        v = v + dv
        v /= np.linalg.norm(v) + 1e-12
        pos = pos + v
    return out


@dataclass(frozen=True)
class CameraPath:
    """Camera pose at each of ``n`` sub-frames, relative to the sharp target's (by default the middle one).

    rotations: (n, 3) radians about x (pitch), y (yaw), z (roll); translations: (n, 3) in
    units of the scene depth (x right, y down, z forward).
    """

    rotations: np.ndarray
    translations: np.ndarray


def _smooth_walk(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """A smooth 1-D path: integrated random velocity with momentum, normalised to ``scale`` peak-to-peak."""
    v = np.cumsum(rng.standard_normal(n)) + rng.standard_normal() * n / 4  # a drift plus wander
    x = np.cumsum(v)
    span = np.ptp(x)
    return (x - x.mean()) * (scale / span if span > 0 else 0.0)


def camera_path(
    rng: np.random.Generator,
    n: int = 15,
    rotation_deg: float = 0.6,
    roll_deg: float = 0.4,
    translation: float = 0.0,
    sharp_at: float = 0.5,
) -> CameraPath:
    """A random smooth 6-DoF shake over ``n`` sub-frames.

    ``rotation_deg``/``roll_deg``: peak-to-peak extent of pitch+yaw and of roll, each drawn
    uniformly between a quarter of that value and all of it; ``translation``: peak-to-peak
    extent of the translation relative to the depth (0 = a tripod-free hand that only rotates,
    the dominant shake). Poses are relative to sub-frame ``round(sharp_at * (n - 1))``, the
    sharp target (0.5: the middle one, the GoPro convention; 0: the first).
    """
    amp = np.deg2rad([rng.uniform(0.25, 1) * rotation_deg, rng.uniform(0.25, 1) * rotation_deg, rng.uniform(0.25, 1) * roll_deg])
    rot = np.stack([_smooth_walk(rng, n, a) for a in amp], axis=1)
    trans = np.stack([_smooth_walk(rng, n, rng.uniform(0, translation)) for _ in range(3)], axis=1)
    ref = round(sharp_at * (n - 1))
    return CameraPath(rot - rot[ref], trans - trans[ref])


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def homographies(
    path: CameraPath,
    width: int,
    height: int,
    focal: float | None = None,
    depth: float = 1.0,
    centre: tuple[float, float] | None = None,
) -> np.ndarray:
    """(n, 3, 3) homographies mapping target (sharp sub-frame) pixels to each sub-frame's pixels,
    for a fronto-parallel scene plane at ``depth``: H = K (R - t n^T / d) K^-1.

    ``centre`` is the principal point (x, y) in pixels, the image centre by default; a crop
    cut from far off a photo's centre has it outside the crop (roll then blurs it as a shift).

    ``focal`` in pixels defaults to the image diagonal (a ~53° field of view, a phone's main camera).
    """
    f = focal or float(np.hypot(width, height))
    cx, cy = centre if centre is not None else ((width - 1) / 2, (height - 1) / 2)
    k = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
    k_inv = np.linalg.inv(k)
    normal = np.array([[0.0, 0.0, 1.0]])
    out = []
    for r, t in zip(path.rotations, path.translations):
        h = k @ (_rotation(*r) - t[:, None] @ normal / depth) @ k_inv
        out.append(h / h[2, 2])
    return np.stack(out)

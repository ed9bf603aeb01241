"""Blur kernel generators. Every kernel is float32, odd-sized, sums to 1 and has its
centre of mass at the central pixel, so blurring does not shift the image.
"""

from __future__ import annotations

import numpy as np

from unblur.blur.trajectory import random_walk_trajectory


def _splat(points: np.ndarray, size: int) -> np.ndarray:
    """Rasterise (N, 2) sub-pixel (x, y) points with bilinear weights onto a size x size grid.

    Bilinear splatting keeps the first moment, so points centred on (c, c) give a
    kernel whose centre of mass is exactly (c, c).
    """
    k = np.zeros((size, size), np.float64)
    x0 = np.floor(points[:, 0]).astype(int)
    y0 = np.floor(points[:, 1]).astype(int)
    fx, fy = points[:, 0] - x0, points[:, 1] - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), w)
    return k


def _normalise(k: np.ndarray) -> np.ndarray:
    return (k / k.sum()).astype(np.float32)


def motion_path(size: int, rng: np.random.Generator, extent: float | None = None) -> np.ndarray:
    """The camera-shake path of :func:`motion_kernel`: (N, 2) points (x, y) in the pixel coordinates
    of a size x size kernel, dense (about 8 per pixel of path, in the order of the exposure) and
    with their mean on the central pixel."""
    if size % 2 == 0 or size < 3:
        raise ValueError(f"kernel size must be odd and >= 3, got {size}")
    path = random_walk_trajectory(rng)
    span = np.ptp(path, axis=0).max()
    extent = rng.uniform(0.4, 1.0) * (size - 2) if extent is None else min(extent, size - 2)
    path = path * (extent / max(span, 1e-6))
    # Resample densely along the path so that no gaps appear between splats.
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    t = np.concatenate([[0], np.cumsum(seg)])
    dense = np.linspace(0, t[-1], max(2, int(t[-1] * 8)))
    path = np.stack([np.interp(dense, t, path[:, 0]), np.interp(dense, t, path[:, 1])], axis=1)
    # Centre the mass on the central pixel, shrinking the rare path that would then
    # leave the canvas (a long excursion on one side of the centroid).
    path = path - path.mean(axis=0)
    reach = np.abs(path).max()
    path *= min(1.0, ((size - 1) / 2 - 0.5) / max(reach, 1e-6))
    return path + (size - 1) / 2


def motion_kernel(size: int, rng: np.random.Generator, extent: float | None = None) -> np.ndarray:
    """A camera-shake motion kernel of odd ``size`` from a random-walk trajectory.

    ``extent`` (pixels) is the largest side of the path's bounding box; by default
    uniform in [0.4, 1] x (size - 2), so that kernels of one size vary in strength.
    """
    return path_kernel(motion_path(size, rng, extent), size)


def path_kernel(path: np.ndarray, size: int) -> np.ndarray:
    """The kernel of an exposure spread evenly over ``path`` ((N, 2) points (x, y) in pixels of a
    size x size canvas): the points splatted bilinearly, normalised to sum to 1."""
    return _normalise(_splat(path, size))


def partial_kernels(path: np.ndarray, size: int, fractions) -> np.ndarray:
    """Kernels of the first ``fractions`` (each in [0, 1]) of an exposure along ``path`` ((N, 2)
    points in the order of the exposure, as :func:`motion_path` gives), on a size x size canvas.

    Returns (len(fractions), size, size) float32, each summing to 1. The fraction f keeps the
    first max(1, ceil(f * N)) points, re-centred on their own mean like every kernel here (so
    a partial exposure is registered with the sharp image rather than shifted along the path):
    f -> 0 gives the identity (one point on the central pixel), f = 1 the whole path's kernel.
    A prefix reaching past the canvas after re-centring (rare; it needs a strongly curled path)
    has its outer points clipped onto the border, as :func:`_splat` does.
    """
    centre, out = (size - 1) / 2, []
    for f in fractions:
        part = path[: max(1, int(np.ceil(f * len(path))))]
        out.append(path_kernel(part - part.mean(axis=0) + centre, size))
    return np.stack(out)


def linear_motion_kernel(size: int, length: float, angle_deg: float) -> np.ndarray:
    """Uniform straight-line motion of ``length`` pixels at ``angle_deg`` (x to the right, y down)."""
    a = np.deg2rad(angle_deg)
    s = np.linspace(-length / 2, length / 2, max(2, int(length * 8)))
    c = (size - 1) / 2
    return _normalise(_splat(np.stack([c + s * np.cos(a), c + s * np.sin(a)], axis=1), size))


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """An isotropic Gaussian (out-of-focus or lens softness)."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return _normalise(g)


def disk_kernel(size: int, radius: float) -> np.ndarray:
    """A defocus disk of ``radius`` pixels, anti-aliased by 4x4 supersampling."""
    r = (np.arange(size * 4) + 0.5) / 4 - size / 2
    inside = (r[:, None] ** 2 + r[None, :] ** 2 <= radius**2).astype(np.float64)
    disk = inside.reshape(size, 4, size, 4).mean(axis=(1, 3))
    if disk.sum() == 0:
        disk[size // 2, size // 2] = 1
    return _normalise(disk)


def embed(kernel: np.ndarray, size: int) -> np.ndarray:
    """Place an odd kernel at the centre of a larger odd size x size canvas (for batching)."""
    k = kernel.shape[0]
    if k > size:
        raise ValueError(f"kernel of size {k} does not fit in {size}")
    out = np.zeros((size, size), np.float32)
    o = (size - k) // 2
    out[o : o + k, o : o + k] = kernel
    return out

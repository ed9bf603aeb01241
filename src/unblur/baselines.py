"""Classical, non-learned deblurring: the bottom and the reference rows of every table.

Both work in linear light (gamma 2.2, as the benchmark's blur was made) with the
*true* kernel where a dataset provides one ("oracle" rows): they show what knowing
the blur exactly buys, not what a blind method can reach. Images are float32
(H, W, 3) in [0, 1]; kernels are (k, k) float arrays summing to 1, applied as a
convolution (flipped), like ``unblur.blur.synth.convolve``.
"""

from __future__ import annotations

import numpy as np


def _pad(x: np.ndarray, p: int) -> np.ndarray:
    return np.pad(x, ((p, p), (p, p), (0, 0)), mode="reflect")


def _otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The kernel's transfer function on a (H, W) grid, centred so that it does not shift the image."""
    k = kernel.shape[0]
    padded = np.zeros(shape)
    padded[:k, :k] = kernel
    padded = np.roll(padded, (-(k // 2), -(k // 2)), axis=(0, 1))
    return np.fft.rfft2(padded)


def wiener(blurred: np.ndarray, kernel: np.ndarray, weight: float = 1e-2, gamma: float = 2.2) -> np.ndarray:
    """Wiener-style deconvolution with a Laplacian regulariser: X = K* B / (|K|^2 + weight |L|^2)."""
    p = kernel.shape[0]
    lin = _pad(np.clip(blurred, 0, 1).astype(np.float64) ** gamma, p)  # reflect padding tames wrap-around ringing
    h, w = lin.shape[:2]
    K = _otf(kernel, (h, w))
    lap = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float64)
    L = _otf(lap, (h, w))
    out = np.empty_like(lin)
    for c in range(3):
        B = np.fft.rfft2(lin[..., c])
        out[..., c] = np.fft.irfft2(np.conj(K) * B / (np.abs(K) ** 2 + weight * np.abs(L) ** 2), s=(h, w))
    return (np.clip(out[p:-p, p:-p], 0, 1) ** (1 / gamma)).astype(np.float32)


def richardson_lucy(blurred: np.ndarray, kernel: np.ndarray, iterations: int = 30, gamma: float = 2.2) -> np.ndarray:
    """Richardson-Lucy: multiplicative updates x <- x * (K^T (b / (K x))), the Poisson maximum-likelihood estimate."""
    p = kernel.shape[0]
    lin = _pad(np.clip(blurred, 0, 1).astype(np.float64) ** gamma, p) + 1e-4  # keep the ratio finite in black areas
    h, w = lin.shape[:2]
    K = _otf(kernel, (h, w))[None]
    x = lin.transpose(2, 0, 1).copy()
    data = lin.transpose(2, 0, 1)
    for _ in range(iterations):
        est = np.fft.irfft2(np.fft.rfft2(x) * K, s=(h, w))
        ratio = data / np.maximum(est, 1e-6)
        x *= np.fft.irfft2(np.fft.rfft2(ratio) * np.conj(K), s=(h, w))
    return (np.clip(x.transpose(1, 2, 0)[p:-p, p:-p] - 1e-4, 0, 1) ** (1 / gamma)).astype(np.float32)


def wiener_blind(blurred: np.ndarray, sigmas=(0.8, 1.5, 2.5, 4.0)) -> np.ndarray:
    """A simple blind baseline: Wiener deconvolution assuming an isotropic Gaussian blur, its width
    picked per image among ``sigmas`` as the one whose result NIQE finds most natural (lowest)."""
    from unblur.blur.kernels import gaussian_kernel
    from unblur.metrics.niqe import niqe

    candidates = [wiener(blurred, gaussian_kernel(2 * int(np.ceil(3 * s)) + 1, s)) for s in sigmas]
    if min(blurred.shape[:2]) < 96:  # too small for NIQE: take the mildest deconvolution
        return candidates[0]
    return min(candidates, key=niqe)


class ClassicalRestorer:
    """A registered classical method with the restorer interface: ``restore(rgb, kernel=None)``."""

    generative = False  # deterministic: no sampling steps or seeds

    def __init__(self, name: str):
        self.name = name
        self.meta = {"arch": name}
        self.needs_kernel = name.endswith("-oracle")

    def restore(self, rgb: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
        if self.name == "identity":
            return rgb
        if self.name == "wiener-blind":
            return wiener_blind(rgb)
        if kernel is None:
            raise ValueError(f"{self.name} is non-blind: it needs the true kernel, which only a benchmark with kernels provides")
        if self.name == "wiener-oracle":
            return wiener(rgb, kernel)
        return richardson_lucy(rgb, kernel)

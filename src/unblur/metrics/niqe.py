"""NIQE, the no-reference "naturalness" score of Mittal, Soundararajan & Bovik (2013). Lower is better.

Features: on 96x96 patches of the grey image, at full and half resolution, the
mean-subtracted contrast-normalised (MSCN) coefficients' generalised Gaussian fit
(shape, variance) and, for the products of horizontally, vertically and diagonally
neighbouring coefficients, asymmetric generalised Gaussian fits (shape, mean, left
and right variance): 36 numbers per patch. The score is the distance between a
multivariate Gaussian fitted to the test image's patches and one fitted to patches of
pristine photos.

The pristine model shipped here (``niqe_pristine.npz``) is ours, fitted by
``scripts/fit_niqe.py`` to scikit-image's bundled CC0 / public-domain photos, not the
authors' parameter file: our scores rank images like NIQE does, but their absolute
values are not comparable with figures computed by the original MATLAB code.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

PRISTINE = Path(__file__).parent / "niqe_pristine.npz"
PATCH = 96


@lru_cache(maxsize=1)
def _shape_tables():
    g = np.arange(0.2, 10.0, 0.001)
    lg = np.vectorize(math.lgamma)
    l1, l2, l3 = lg(1 / g), lg(2 / g), lg(3 / g)
    ggd = np.exp(l1 + l3 - 2 * l2)  # E[x^2] / E[|x|]^2 of a GGD of shape g
    aggd = np.exp(2 * l2 - l1 - l3)
    return g, ggd, aggd


def ggd_fit(x: np.ndarray) -> tuple[float, float]:
    """Shape and variance of a zero-mean generalised Gaussian, by moment matching."""
    g, ggd, _ = _shape_tables()
    var = float(np.mean(x**2))
    rho = var / max(float(np.mean(np.abs(x))) ** 2, 1e-12)
    return float(g[np.argmin(np.abs(ggd - rho))]), var


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Shape, mean, left and right variance of an asymmetric generalised Gaussian."""
    g, _, aggd = _shape_tables()
    left, right = x[x < 0], x[x > 0]
    sl = math.sqrt(float(np.mean(left**2))) if left.size else 1e-6
    sr = math.sqrt(float(np.mean(right**2))) if right.size else 1e-6
    gam = sl / sr
    rhat = float(np.mean(np.abs(x))) ** 2 / max(float(np.mean(x**2)), 1e-12)
    rnorm = rhat * (gam**3 + 1) * (gam + 1) / (gam**2 + 1) ** 2
    a = float(g[np.argmin(np.abs(aggd - rnorm))])
    ratio = math.exp(math.lgamma(2 / a) - math.lgamma(1 / a))
    scale = math.sqrt(math.exp(math.lgamma(1 / a) - math.lgamma(3 / a)))
    return a, (sr - sl) * scale * ratio, sl**2, sr**2


def mscn(grey: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of an (H, W) image in [0, 255]."""
    import cv2

    mu = cv2.GaussianBlur(grey, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE)
    sigma = np.sqrt(np.abs(cv2.GaussianBlur(grey * grey, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE) - mu * mu))
    return (grey - mu) / (sigma + 1)


def _patch_features(m: np.ndarray) -> list[float]:
    f = list(ggd_fit(m))
    for shifted in (m[:, 1:] * m[:, :-1], m[1:] * m[:-1], m[1:, 1:] * m[:-1, :-1], m[1:, :-1] * m[:-1, 1:]):
        f.extend(aggd_fit(shifted))
    return f


def patch_features(grey: np.ndarray, patch: int = PATCH) -> tuple[np.ndarray, np.ndarray]:
    """(N, 36) features of the image's N whole patches, and each patch's sharpness (mean local deviation)."""
    import cv2

    h, w = (grey.shape[0] // patch) * patch, (grey.shape[1] // patch) * patch
    if h == 0 or w == 0:
        raise ValueError(f"NIQE needs an image of at least {patch}x{patch} pixels, got {grey.shape[1]}x{grey.shape[0]}")
    grey = grey[:h, :w].astype(np.float64)
    half = cv2.resize(grey, (w // 2, h // 2), interpolation=cv2.INTER_CUBIC)
    scales = [(mscn(grey), patch), (mscn(half), patch // 2)]
    feats, sharp = [], []
    for i in range(h // patch):
        for j in range(w // patch):
            row = []
            for m, p in scales:
                row.extend(_patch_features(m[i * p : (i + 1) * p, j * p : (j + 1) * p]))
            feats.append(row)
            block = grey[i * patch : (i + 1) * patch, j * patch : (j + 1) * patch]
            sharp.append(
                float(
                    np.sqrt(
                        np.abs(cv2.GaussianBlur(block * block, (7, 7), 7 / 6) - cv2.GaussianBlur(block, (7, 7), 7 / 6) ** 2)
                    ).mean()
                )
            )
    return np.array(feats), np.array(sharp)


def to_grey255(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) floats in [0, 1] -> (H, W) luma in [0, 255], quantised to 8 bits first."""
    x = np.round(np.clip(rgb, 0, 1) * 255)
    return x @ np.array([0.299, 0.587, 0.114])


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(PRISTINE)
    return data["mu"], data["cov"]


def niqe(rgb: np.ndarray) -> float:
    """NIQE of an (H, W, 3) float image in [0, 1] (at least 96x96 pixels). Lower is more natural."""
    feats, _ = patch_features(to_grey255(rgb))
    mu_p, cov_p = pristine_model()
    mu_t = feats.mean(axis=0)
    cov_t = np.cov(feats, rowvar=False) if len(feats) > 1 else np.zeros_like(cov_p)
    d = mu_p - mu_t
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov_t) / 2) @ d))

"""On-the-fly blurred/sharp pairs from a folder of sharp photos.

Batches are indexed by training step: batch ``s`` is drawn from a generator
seeded with ``(seed, s)``, so a run is reproducible, resumes exactly where it
stopped, and can be split across data-loader workers in any order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unblur.blur.synth import PRESETS
from unblur.io import ImageError, list_images, read_image


def load_folder(folder: str | Path, max_side: int | None = None) -> list[np.ndarray]:
    """Decode every readable image of a folder into uint8 (H, W, 3) arrays, sorted by name."""
    images = []
    for path in list_images([folder]):
        try:
            rgb, _ = read_image(path)
        except ImageError:
            continue  # a corrupt photo must not stop a training run; the rest are enough
        arr = np.round(rgb * 255).astype(np.uint8)
        if max_side and max(arr.shape[:2]) > max_side:
            step = int(np.ceil(max(arr.shape[:2]) / max_side))
            arr = arr[::step, ::step]
        images.append(arr)
    if not images:
        raise FileNotFoundError(f"no readable images in {folder}")
    return images


def _augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the 8 flips/rotations of the square."""
    crop = np.rot90(crop, int(rng.integers(4)))
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def _detail(crop: np.ndarray) -> float:
    """Mean absolute grey-level gradient in [0, 1] units: near 0 for sky, walls, bokeh."""
    g = crop.mean(axis=2) / 255.0
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def presets(name: str) -> list:
    """``"realistic"`` -> [its spec]; ``"realistic+uniform-kernel"`` -> both (a mixture, one drawn per crop)."""
    names = name.split("+")
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise KeyError(f"unknown blur preset {unknown[0]!r} (known: {', '.join(PRESETS)})")
    return [PRESETS[n]() for n in names]


def _simulate(spec, window: np.ndarray, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Blur one uint8 window with ``spec`` and cut the margin ``m`` off: float32 (blurred, sharp)."""
    blurred, sharp, _ = spec.make(window.astype(np.float32) / 255.0, rng)
    return blurred[m:-m, m:-m], sharp[m:-m, m:-m]


def _stack(pairs: list) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(np.stack([p[j] for p in pairs])).permute(0, 3, 1, 2).contiguous() for j in (0, 1))


class SyntheticPairs(torch.utils.data.Dataset):
    """Item ``s`` is the batch for training step ``s``: ``(blurred, sharp)``, each (B, 3, crop, crop) in [0, 1].

    Sample ``i`` of step ``s`` is drawn from its own generator seeded ``(seed, s, i)``; a
    dataset with ``offset=o`` returns samples ``o .. o + batch - 1``. So the batches of N
    data-parallel processes (``offset = rank * batch``) are exactly the halves, thirds...
    of one process's batch of N * batch, and any run resumes exactly at a step.
    Crops are taken with a margin of context (the largest blur's reach) and blurred with
    no border assumption, so every output pixel saw real scene content. Crops flatter
    than ``min_detail`` are re-drawn (up to 10 times). ``preset`` names one blur preset
    or a mixture ``"a+b"`` (each crop draws one of them).
    """

    def __init__(
        self,
        images: list[np.ndarray],
        crop: int = 128,
        batch: int = 8,
        seed: int = 0,
        preset: str = "uniform-kernel",
        min_detail: float = 0.02,
        length: int = 10**9,
        offset: int = 0,
    ):
        self.images, self.crop, self.batch, self.seed, self.offset = images, crop, batch, seed, offset
        self.specs = presets(preset)
        self.margin = max(spec.margin for spec in self.specs)
        self.min_detail, self.length = min_detail, length

    def __len__(self) -> int:
        return self.length

    def _crop(self, rng: np.random.Generator) -> np.ndarray:
        size = self.crop + 2 * self.margin
        best, best_detail = None, -1.0
        for _ in range(10):
            img = self.images[int(rng.integers(len(self.images)))]
            h, w = img.shape[:2]
            if h < size or w < size:  # small photo: reflect it up to size
                img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")
                h, w = img.shape[:2]
            y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
            crop = img[y : y + size, x : x + size]
            detail = _detail(crop)
            if detail > best_detail:
                best, best_detail = crop, detail
            if detail >= self.min_detail:
                break
        return _augment(best, rng)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.margin
        rngs = [np.random.default_rng([self.seed, int(step), self.offset + i]) for i in range(self.batch)]
        if len(self.specs) > 1 or not hasattr(self.specs[0], "render"):  # one simulation per crop
            pairs = []
            for rng in rngs:
                spec = self.specs[int(rng.integers(len(self.specs)))] if len(self.specs) > 1 else self.specs[0]
                pairs.append(_simulate(spec, self._crop(rng), rng, m))
            return _stack(pairs)
        # a single kernel preset: the whole batch in one grouped convolution (much faster)
        spec, crops, kernels, sigmas, gens = self.specs[0], [], [], [], []
        for rng in rngs:
            crops.append(self._crop(rng))
            draw = spec.sample(rng)
            kernels.append(draw["kernel"])
            sigmas.append(draw["noise_sigma"])
            gens.append(torch.Generator().manual_seed(int(rng.integers(2**62))))
        sharp = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        blurred = spec.render(sharp, torch.from_numpy(np.stack(kernels)), torch.tensor(sigmas), gens, padding="valid")
        return blurred, sharp[..., m:-m, m:-m].contiguous()


def fixed_pairs(
    images: list[np.ndarray], crop: int, seed: int, preset: str = "uniform-kernel"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic validation batch: one centre crop per image, each with its own seeded blur.

    Returns ``(blurred, sharp)``, each (N, 3, crop, crop) in [0, 1]; the crops are blurred with a
    margin of real context around them (no border assumption), like the training pairs. With a
    mixture ``"a+b"`` image i gets preset i mod 2.
    """
    specs = presets(preset)
    m = max(spec.margin for spec in specs)
    size = crop + 2 * m
    windows = []
    for img in images:
        h, w = img.shape[:2]
        if h < size or w < size:
            img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")
            h, w = img.shape[:2]
        y, x = (h - size) // 2, (w - size) // 2
        windows.append(img[y : y + size, x : x + size])
    if len(specs) > 1 or not hasattr(specs[0], "render"):
        return _stack(
            [_simulate(specs[i % len(specs)], win, np.random.default_rng([seed, i]), m) for i, win in enumerate(windows)]
        )
    spec, kernels, sigmas = specs[0], [], []
    for i in range(len(windows)):
        draw = spec.sample(np.random.default_rng([seed, i]))
        kernels.append(draw["kernel"])
        sigmas.append(draw["noise_sigma"])
    sharp = torch.from_numpy(np.stack(windows)).permute(0, 3, 1, 2).float() / 255.0
    gen = torch.Generator().manual_seed(seed)
    blurred = spec.render(sharp, torch.from_numpy(np.stack(kernels)), torch.tensor(sigmas), gen, padding="valid")
    return blurred, sharp[..., m:-m, m:-m].contiguous()

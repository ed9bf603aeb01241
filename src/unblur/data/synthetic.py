"""On-the-fly blurred/sharp pairs from a folder of sharp photos (and crops of unpaired blurred photos).

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


def _render_kernels(spec, windows: list, rngs: list, m: int, noise: torch.Generator | None = None, fractions=None):
    """Blur uint8 windows with a kernel preset in one grouped convolution (much faster than one by one).

    Window i's kernel and noise level come from ``rngs[i]``; its noise from a generator seeded by
    ``rngs[i]`` too, or from ``noise``, one generator for the whole batch. Returns (blurred, sharp)
    tensors (N, 3, S - 2m, S - 2m) in [0, 1]; with ``fractions`` (n values in [0, 1]) also each
    window's partial exposures (N, n, 3, S - 2m, S - 2m) (:meth:`UniformKernelBlur.partial_exposures`),
    which draw nothing from ``rngs``: the pair is the same with or without them.
    """
    draws, gens = [], []
    for rng in rngs:
        draws.append(spec.sample(rng))
        if noise is None:
            gens.append(torch.Generator().manual_seed(int(rng.integers(2**62))))
    sharp = torch.from_numpy(np.stack(windows)).permute(0, 3, 1, 2).float() / 255.0
    kernels = torch.from_numpy(np.stack([d["kernel"] for d in draws]))
    sigmas = torch.tensor([d["noise_sigma"] for d in draws])
    blurred = spec.render(sharp, kernels, sigmas, noise if noise is not None else gens, padding="valid")
    pair = (blurred, sharp[..., m:-m, m:-m].contiguous())
    if fractions is None:
        return pair
    return (*pair, spec.partial_exposures(sharp, [d["path"] for d in draws], fractions, padding="valid"))


def _random_window(
    images: list[np.ndarray], size: int, rng: np.random.Generator, photo_side: tuple[float, float] | None = None
) -> np.ndarray:
    """A size x size window at a random place of a random one of ``images`` (reflected up to size if smaller).

    ``photo_side`` (lo, hi): the photo is first seen as if area-downscaled so that its long side is a length
    drawn log-uniformly in [lo, hi] pixels (never upscaled, and never below ``size`` on its short side):
    the window is cut at the photo's own resolution, ``size`` times the factor, and box-filtered down to
    ``size``. None: the photo as it is (the draw is then skipped, so earlier seeds give the same windows).
    """
    img = images[int(rng.integers(len(images)))]
    if photo_side is not None:
        lo, hi = photo_side
        side = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        factor = min(max(img.shape[:2]) / side, min(img.shape[:2]) / size)
        if factor > 1:
            return _scaled_window(img, size, factor, rng)
    img = _pad_to(img, size)
    y, x = int(rng.integers(img.shape[0] - size + 1)), int(rng.integers(img.shape[1] - size + 1))
    return img[y : y + size, x : x + size]


def _scaled_window(img: np.ndarray, size: int, factor: float, rng: np.random.Generator) -> np.ndarray:
    """A random window of ``img`` of side ``size * factor`` (factor > 1), area-averaged down to size x size."""
    from PIL import Image

    span = min(int(round(size * factor)), *img.shape[:2])
    y, x = int(rng.integers(img.shape[0] - span + 1)), int(rng.integers(img.shape[1] - span + 1))
    window = Image.fromarray(np.ascontiguousarray(img[y : y + span, x : x + span]))
    return np.asarray(window.resize((size, size), Image.BOX))


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window of an (H, W, ...) array (a side shorter than size stays whole)."""
    y, x = max(0, (img.shape[0] - size) // 2), max(0, (img.shape[1] - size) // 2)
    return img[y : y + size, x : x + size]


def _pad_to(img: np.ndarray, size: int) -> np.ndarray:
    """A photo smaller than size x size, reflected up to it at the bottom/right (others as they are)."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return img
    return np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="reflect")


class SyntheticPairs(torch.utils.data.Dataset):
    """Item ``s`` is the batch for training step ``s``: ``(blurred, sharp)``, each (B, 3, crop, crop) in [0, 1].

    Sample ``i`` of step ``s`` is drawn from its own generator seeded ``(seed, s, i)``; a
    dataset with ``offset=o`` returns samples ``o .. o + batch - 1``. So the batches of N
    data-parallel processes (``offset = rank * batch``) are exactly the halves, thirds...
    of one process's batch of N * batch, and any run resumes exactly at a step.
    Crops are taken with a margin of context (the largest blur's reach) and blurred with
    no border assumption, so every output pixel saw real scene content. Crops flatter
    than ``min_detail`` are re-drawn (up to 10 times). ``preset`` names one blur preset
    or a mixture ``"a+b"`` (each crop draws one of them). ``photo_side`` (lo, hi) sees each
    crop's photo at a random scale first, its long side drawn in [lo, hi] pixels (see
    :func:`_random_window`): a large photo then also gives crops as dense in detail as a
    downscaled one, the way photos are shown, shared and benchmarked.

    ``exposure_fractions`` (n values in [0, 1], for BlurDM's ``exposure_weight``; the
    ``uniform-kernel`` preset only) makes item ``s`` a dict ``{"blurred", "sharp", "exposures"}``
    instead, ``exposures`` (B, n, 3, crop, crop) in [0, 1]: each sample's sharp crop exposed over
    the first fraction of its kernel's path, noise-free (:meth:`UniformKernelBlur.partial_exposures`).
    The pair is bit-identical to the one returned without them.
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
        exposure_fractions=None,
        photo_side: tuple[float, float] | None = None,
    ):
        self.images, self.crop, self.batch, self.seed, self.offset = images, crop, batch, seed, offset
        if photo_side is not None and not 0 < photo_side[0] <= photo_side[1]:
            raise ValueError(f"photo_side must be two lengths lo <= hi in pixels, not {photo_side}")
        self.photo_side = None if photo_side is None else (float(photo_side[0]), float(photo_side[1]))
        self.specs = presets(preset)
        self.fractions = None if exposure_fractions is None else tuple(float(f) for f in exposure_fractions)
        if self.fractions is not None and (len(self.specs) > 1 or not hasattr(self.specs[0], "partial_exposures")):
            raise ValueError(f"partial exposures are rendered for the uniform-kernel preset only, not {preset!r}")
        self.margin = max(spec.margin for spec in self.specs)
        self.min_detail, self.length = min_detail, length

    def __len__(self) -> int:
        return self.length

    def _crop(self, rng: np.random.Generator) -> np.ndarray:
        size = self.crop + 2 * self.margin
        best, best_detail = None, -1.0
        for _ in range(10):
            crop = _random_window(self.images, size, rng, self.photo_side)
            detail = _detail(crop)
            if detail > best_detail:
                best, best_detail = crop, detail
            if detail >= self.min_detail:
                break
        return _augment(best, rng)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor] | dict:
        m = self.margin
        rngs = [np.random.default_rng([self.seed, int(step), self.offset + i]) for i in range(self.batch)]
        if len(self.specs) > 1 or not hasattr(self.specs[0], "render"):  # one simulation per crop
            pairs = []
            for rng in rngs:
                spec = self.specs[int(rng.integers(len(self.specs)))] if len(self.specs) > 1 else self.specs[0]
                pairs.append(_simulate(spec, self._crop(rng), rng, m))
            return _stack(pairs)
        out = _render_kernels(self.specs[0], [self._crop(rng) for rng in rngs], rngs, m, fractions=self.fractions)
        return out if self.fractions is None else dict(zip(("blurred", "sharp", "exposures"), out))


class UnpairedCrops(torch.utils.data.Dataset):
    """Item ``s``: a batch (B, 3, crop, crop) in [0, 1] of random crops of unpaired images, for training step ``s``.

    BD-Diff's target domain: a folder of blurred photos without sharp twins (``data.target``). Sample ``i``
    of step ``s`` comes from a generator seeded ``(seed, s, offset + i, 1)``, so, as with
    :class:`SyntheticPairs` (whose streams have no fourth number), every step is reproducible and a
    resumed run draws the same crops. Photos smaller than the crop are reflected up to it. No flips or
    rotations: they would change the direction of the domain's blur, the very thing the model learns.
    """

    def __init__(self, images: list[np.ndarray], crop: int = 128, batch: int = 8, seed: int = 0, offset: int = 0):
        self.images, self.crop, self.batch, self.seed, self.offset = images, crop, batch, seed, offset

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, step: int) -> torch.Tensor:
        rngs = [np.random.default_rng([self.seed, int(step), self.offset + i, 1]) for i in range(self.batch)]
        crops = np.stack([_random_window(self.images, self.crop, rng) for rng in rngs])
        return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0


def named_batch(item: tuple | dict) -> dict:
    """A training item by name: a (blurred, sharp) pair becomes ``{"blurred", "sharp"}``; a dict stays as it is."""
    return item if isinstance(item, dict) else {"blurred": item[0], "sharp": item[1]}


class PairsWithTarget(torch.utils.data.Dataset):
    """Step ``s``'s pairs as a dict ``{"blurred", "sharp", ...}`` plus ``"target"``: the same step's crops of
    the unpaired target domain (:class:`UnpairedCrops`), so they travel through the data loader like
    any other extra and reach the method's ``training_loss`` as ``batch["target"]``."""

    def __init__(self, pairs: torch.utils.data.Dataset, target: UnpairedCrops):
        self.pairs, self.target = pairs, target

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, step: int) -> dict:
        return {**named_batch(self.pairs[step]), "target": self.target[step]}


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
        windows.append(centre_crop(_pad_to(img, size), size))
    rngs = [np.random.default_rng([seed, i]) for i in range(len(windows))]
    if len(specs) > 1 or not hasattr(specs[0], "render"):
        return _stack([_simulate(specs[i % len(specs)], win, rng, m) for i, (win, rng) in enumerate(zip(windows, rngs))])
    return _render_kernels(specs[0], windows, rngs, m, noise=torch.Generator().manual_seed(seed))


def blurred_photos(folder: str | Path, preset: str, seed: int = 0, crop: int = 0, limit: int | None = None):
    """Our synthetic validation protocol: every photo of ``folder`` (sorted, the first ``limit``),
    blurred whole by ``preset`` with generator seed [seed, index]. Yields (name, blurred, sharp),
    float32 (H, W, 3) in [0, 1]; with ``crop`` > 0 only the centre crop x crop of each pair."""
    spec = PRESETS[preset]()
    for i, path in enumerate(list_images([folder])[:limit]):
        blurred, sharp, _ = spec.make(read_image(path)[0], np.random.default_rng([seed, i]))
        if crop:
            blurred, sharp = centre_crop(blurred, crop), centre_crop(sharp, crop)
        yield path.stem, blurred, sharp

"""Paired datasets in the field's layouts, and unpaired folders of blurred images.

- ours / ``unblur synth``: ``ROOT/blur/NAME.*`` with ``ROOT/sharp/NAME.*`` and, where the
  blur is known, ``ROOT/kernel/NAME.npy`` (float32, sums to 1, applied as a convolution);
- GoPro: ``ROOT/{train,test}/<scene>/{blur,blur_gamma,sharp}/*.png``;
- HIDE: ``ROOT/test/<subset>/*.png`` with ``ROOT/GT/*.png``;
- RealBlur: ``ROOT/RealBlur_{J,R}_{train,test}_list.txt``, lines "<gt path> <blur path>" relative to ROOT.

Every loader returns a sorted list of :class:`Pair`; :class:`PairedImages` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unblur.io import list_images


@dataclass(frozen=True)
class Pair:
    name: str
    blurred: Path
    sharp: Path
    kernel: Path | None

    def load_kernel(self) -> np.ndarray | None:
        return np.load(self.kernel).astype(np.float64) if self.kernel else None


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    return path


def gopro_pairs(root: str | Path, split: str = "test", blur: str = "blur") -> list[Pair]:
    """GoPro: every scene of ``split``; ``blur="blur_gamma"`` for the gamma-averaged inputs."""
    pairs = []
    for scene in sorted(p for p in _need(Path(root) / split).iterdir() if p.is_dir()):
        for b in list_images([_need(scene / blur)]):
            pairs.append(Pair(f"{scene.name}_{b.stem}", b, _need(scene / "sharp" / b.name), None))
    return pairs


def hide_pairs(root: str | Path) -> list[Pair]:
    """HIDE: blurred images in the subsets of ``test/``, ground truth of the same name in ``GT/``."""
    root = Path(root)
    pairs = []
    for subset in sorted(p for p in _need(root / "test").iterdir() if p.is_dir()):
        for b in list_images([subset]):
            pairs.append(Pair(f"{subset.name}_{b.stem}", b, _need(root / "GT" / b.name), None))
    return pairs


def realblur_pairs(root: str | Path, variant: str = "J", split: str = "test") -> list[Pair]:
    """RealBlur-J or -R from its list file."""
    root = Path(root)
    pairs = []
    for line in _need(root / f"RealBlur_{variant}_{split}_list.txt").read_text().splitlines():
        if line.strip():
            gt, blurred = line.split()[:2]
            name = "_".join(Path(blurred).parts[-3:]).rsplit(".", 1)[0]
            pairs.append(Pair(name, _need(root / blurred), _need(root / gt), None))
    return pairs


def unpaired_blurred(folder: str | Path) -> list[Path]:
    """A target domain known only by its blurred photos (BD-Diff's unpaired task): the image paths."""
    images = list_images([_need(Path(folder))])
    if not images:
        raise FileNotFoundError(f"{folder}: no images")
    return images


def find_pairs(root: str | Path) -> list[Pair]:
    """All pairs of a set, sorted by name; a blurred image without its sharp twin is an error."""
    root = Path(root)
    if not (root / "blur").is_dir() or not (root / "sharp").is_dir():
        raise FileNotFoundError(f"{root}: expected the folders blur/ and sharp/")
    sharp = {p.stem: p for p in list_images([root / "sharp"])}
    pairs = []
    for b in list_images([root / "blur"]):
        if b.stem not in sharp:
            raise FileNotFoundError(f"{b}: no sharp image named {b.stem}.* in {root / 'sharp'}")
        k = root / "kernel" / f"{b.stem}.npy"
        pairs.append(Pair(b.stem, b, sharp[b.stem], k if k.exists() else None))
    if not pairs:
        raise FileNotFoundError(f"{root / 'blur'}: no images")
    return pairs


def load_pairs(root: str | Path, limit: int | None = None):
    """A paired folder (``blur/`` + ``sharp/``) read into memory: yields (name, blurred, sharp) arrays."""
    pairs = find_pairs(root)[:limit]
    for pair, (blurred, sharp) in zip(pairs, PairedImages(pairs)):
        yield pair.name, blurred, sharp


class PairedImages:
    """Index -> ``(blurred, sharp)`` float32 (H, W, 3) arrays in [0, 1] of a list of pairs."""

    def __init__(self, pairs: list[Pair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from unblur.io import read_image

        return read_image(self.pairs[i].blurred)[0], read_image(self.pairs[i].sharp)[0]

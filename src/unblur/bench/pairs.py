"""Paired evaluation sets: ``ROOT/blur/NAME.*`` with ``ROOT/sharp/NAME.*`` and, where the
blur is known, ``ROOT/kernel/NAME.npy`` (float32, sums to 1, applied as a convolution)."""

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

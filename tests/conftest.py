"""Shared fixtures: small real images on disk, made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like uint8 RGB image: smooth shading plus edges and texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.4 * np.sin(6 * x + c) * np.cos(4 * y - c) for c in (0, 1, 2)], axis=2)
    blocks = (np.floor(x * 8) + np.floor(y * 8)) % 2
    img = 0.7 * base + 0.2 * blocks[..., None] + 0.1 * rng.random((h, w, 1))
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(textured(48, 64)).save(path)
    return path


@pytest.fixture(scope="session")
def sharp_folder(tmp_path_factory) -> Path:
    """A folder of a few sharp 'photos' for training and validation."""
    folder = tmp_path_factory.mktemp("sharp")
    for i in range(4):
        Image.fromarray(textured(96, 112, seed=i)).save(folder / f"img{i}.jpg", quality=95)
    return folder

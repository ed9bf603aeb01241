"""Draw docs/figures/blur-presets.png: a sharp photo, each blur preset applied to it, and for each
preset its blur (the kernel, or for the exposure presets a map of how far each pixel travels),
and an object that moves by itself; and docs/figures/real-world-preset.png: each part of the
``real-world`` mixture with its weight.

Uses a scikit-image photo (public domain), so the figure can be committed. Needs scikit-image.

    python scripts/make_blur_figure.py
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import skimage.data

from unblur.blur.synth import PRESETS, Mixture
from unblur.blur.trajectory import CameraPath, homographies
from unblur.demo import comparison
from unblur.io import write_image

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def travel_map(meta: dict, w: int, h: int) -> np.ndarray:
    """Per pixel, the longest distance (pixels) it moves from the sharp (middle) sub-frame: (h, w)."""
    path = CameraPath(np.array(meta["rotations"]), np.array(meta["translations"]))
    hs = homographies(path, w, h, focal=meta["focal"], centre=meta.get("centre"))
    ys, xs = np.mgrid[0:h, 0:w]
    p = np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(-1, 3).T.astype(np.float64)
    dist = np.zeros(p.shape[1])
    for m in hs:
        q = m @ p
        dist = np.maximum(dist, np.hypot(q[0] / q[2] - p[0], q[1] / q[2] - p[1]))
    return dist.reshape(h, w)


def as_picture(a: np.ndarray, top: float) -> np.ndarray:
    """A non-negative map as a grey-to-orange picture (H, W, 3) in [0, 1], scaled by ``top``."""
    v = np.clip(a / top, 0, 1)[..., None]
    return np.concatenate([v, 0.6 * v, 0.2 * v], axis=2) * 0.9 + 0.05


def kernel_picture(k: np.ndarray, size: int) -> np.ndarray:
    big = np.kron(k / k.max(), np.ones((size // k.shape[0], size // k.shape[0])))
    pad = (size - big.shape[0]) // 2
    return as_picture(np.pad(big, ((pad, size - big.shape[0] - pad),) * 2), 1.0)


def blur_picture(meta: dict, w: int, h: int) -> tuple[np.ndarray, str]:
    """The blur behind one made pair: its kernel, or how far each pixel travels (stretched to show how it varies)."""
    if "kernel" in meta:
        return kernel_picture(meta["kernel"], h), f"kernel ({meta['kernel'].shape[0]} px)"
    if "rotations" not in meta:
        return np.full((h, w, 3), 0.05, np.float32), "no blur"
    t = travel_map(meta, w, h)
    return as_picture(t - t.min(), max(t.max() - t.min(), 1e-6)), f"travel {t.min():.1f}-{t.max():.1f} px"


def presets_figure(sharp: np.ndarray) -> None:
    h, w = sharp.shape[:2]
    top_row, bottom_row = [(sharp, "sharp")], [(np.ones_like(sharp), "the blur of each preset:")]
    for i, name in enumerate(n for n in PRESETS if not isinstance(PRESETS[n](), Mixture)):
        blurred, _, meta = PRESETS[name]().make(sharp, np.random.default_rng([7, i]))
        top_row.append((blurred, name))
        bottom_row.append(blur_picture(meta, w, h))
    # an object moving by itself (half of gopro-like's images have one): show where the image changed
    still = replace(PRESETS["gopro-like"](), rotation_deg=0.02, roll_deg=0.0, translation=0.0, moving_object=1.0)
    blurred, target, meta = still.make(sharp, np.random.default_rng([7, 9]))
    top_row.append((blurred, "moving object, camera still"))
    change = np.abs(blurred - target).mean(axis=2)
    bottom_row.append((as_picture(change, 0.2), f"|blurred - sharp| (object moved {np.hypot(*meta['object_shift']):.0f} px)"))
    write_image(FIGURES / "blur-presets.png", comparison([top_row, bottom_row], height=256), overwrite=True)


def mixture_figure(sharp: np.ndarray) -> None:
    """Each part of the real-world mixture on the same photo, with its weight (share of training images)."""
    h, w = sharp.shape[:2]
    mixture = PRESETS["real-world"]()
    total = sum(weight for weight, _ in mixture.parts)
    top_row, bottom_row = [], []
    for i, (weight, spec) in enumerate(mixture.parts):
        blurred, _, meta = spec.make(sharp, np.random.default_rng([7, i]))
        name = getattr(spec, "name", "uniform-kernel")
        top_row.append((blurred, f"{name} ({100 * weight / total:.0f} %)"))
        bottom_row.append(blur_picture(meta, w, h))
    write_image(FIGURES / "real-world-preset.png", comparison([top_row, bottom_row], height=256), overwrite=True)


if __name__ == "__main__":
    photo = skimage.data.astronaut()[..., :3].astype(np.float32) / 255.0
    presets_figure(photo)
    mixture_figure(photo)
    print(f"wrote {FIGURES / 'blur-presets.png'} and {FIGURES / 'real-world-preset.png'}")

"""Make the demo's sample pairs from scikit-image's public-domain / CC0 photos.

Each photo is blurred by our synthesizer (uniform-kernel preset) with a fixed
seed; the blurred and the sharp versions are written to
src/unblur/assets/samples/. Needs scikit-image (the `test` extra).

    python scripts/make_samples.py
"""

from pathlib import Path

import numpy as np
import skimage.data

from unblur.blur.synth import blur_image
from unblur.io import write_image

SAMPLES = {  # name: (loader, licence as scikit-image states it)
    "astronaut": ("astronaut", "NASA, public domain"),
    "chelsea": ("chelsea", "CC0, Stefan van der Walt"),
    "coffee": ("coffee", "CC0, Rachel Michetti"),
    "rocket": ("rocket", "SpaceX, public domain"),
}
OUT = Path(__file__).resolve().parents[1] / "src" / "unblur" / "assets" / "samples"

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (name, (loader, _)) in enumerate(SAMPLES.items()):
        sharp = getattr(skimage.data, loader)()[..., :3].astype(np.float32) / 255.0
        blurred, meta = blur_image(sharp, np.random.default_rng([2026, i]))
        write_image(OUT / f"{name}-sharp.png", sharp, overwrite=True)
        write_image(OUT / f"{name}-blurred.png", blurred, overwrite=True)
        print(f"{name}: {sharp.shape[1]}x{sharp.shape[0]}, kernel {meta['kernel'].shape[0]} px, noise {meta['noise_sigma']:.4f}")

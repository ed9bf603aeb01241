"""Fit NIQE's pristine model from scikit-image's bundled CC0 / public-domain photos and save it
into the package (src/unblur/metrics/niqe_pristine.npz). Needs scikit-image (the `test` extra).

As in Mittal et al. (2013), only the sharpest patches of each photo count (sharpness above
0.75 of the photo's sharpest patch). The photos used here are deliberately not the ones the
demo samples are made from (astronaut, chelsea, coffee, rocket), so that tests scoring those
samples measure something the model has not seen.

    python scripts/fit_niqe.py
"""

from pathlib import Path

import numpy as np
import skimage.data

from unblur.metrics.niqe import PRISTINE, patch_features, to_grey255

PHOTOS = ["camera", "stereo_motorcycle", "brick", "grass", "gravel", "coins", "moon", "hubble_deep_field", "immunohistochemistry"]

if __name__ == "__main__":
    feats = []
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        img = img[0] if name == "stereo_motorcycle" else img  # (left, right, disparity): the left photo
        rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        f, sharp = patch_features(to_grey255(rgb.astype(np.float32) / 255.0))
        keep = f[sharp > 0.75 * sharp.max()]
        feats.append(keep)
        print(f"{name}: {len(f)} patches, {len(keep)} sharp enough")
    feats = np.concatenate(feats)
    np.savez(PRISTINE, mu=feats.mean(axis=0), cov=np.cov(feats, rowvar=False), photos=np.array(PHOTOS))
    print(f"{len(feats)} patches -> {Path(PRISTINE).name}")

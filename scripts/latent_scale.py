"""Measure the latent scale of a trained small VAE (the value of ``model.latent_scale`` in the diffusion configs).

    python scripts/latent_scale.py runs/vae-small/last.safetensors [--photos DATA/photos/train] [--crop 256]

Encodes one centre crop of every photo of the training folder and prints 1 / std of the latents.
"""

import argparse

import numpy as np
import torch

from unblur.data.root import data_root
from unblur.data.synthetic import centre_crop, load_folder
from unblur.methods.small_sd import latent_scale, load_trained_vae


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vae", help="model file of the VAE stage")
    ap.add_argument("--photos", default=str(data_root() / "photos/train"))
    ap.add_argument("--crop", type=int, default=256)
    args = ap.parse_args()
    crops = [
        torch.from_numpy(centre_crop(img, args.crop).transpose(2, 0, 1) / np.float32(255))
        for img in load_folder(args.photos)
        if min(img.shape[:2]) >= args.crop
    ]
    vae = load_trained_vae(args.vae)
    scales = [latent_scale(vae, torch.stack(crops[i : i + 16])) for i in range(0, len(crops), 16)]
    # the mean of 1/std per chunk is close to 1/std of all when chunks are alike; print both ends for honesty
    print(
        f"{len(crops)} crops of {args.crop}^2: latent scale {sum(scales) / len(scales):.4f} (chunks {min(scales):.4f}..{max(scales):.4f})"
    )


if __name__ == "__main__":
    main()

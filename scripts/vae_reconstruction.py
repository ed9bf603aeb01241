"""PSNR of a trained small VAE's reconstruction of sharp photos (the DeblurDiff issue's "latent that does not cap").

    python scripts/vae_reconstruction.py vae-f2 [--photos DATA/photos/val] [--images 24] [--crop 256]

Encodes (posterior mode) and decodes one centre crop of each of the first N photos, the crops the VAE stage
validates on (``data.val_images``, ``data.val_crop``), and prints the mean, worst and best PSNR (8-bit RGB).
The VAE runs in fp32 whatever the file stores (a ``--half`` file is read back as fp32).
"""

import argparse

import torch

from unblur.data.root import data_root
from unblur.data.synthetic import fixed_pairs, load_folder
from unblur.metrics import psnr_tensor
from unblur.modelfile import load_model_file
from unblur.zoo import resolve_component


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vae", help="model file of the VAE stage, or a bundled component's name")
    ap.add_argument("--photos", default=str(data_root() / "photos/val"))
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--crop", type=int, default=256)
    args = ap.parse_args()
    _, sharp = fixed_pairs(load_folder(args.photos)[: args.images], args.crop, seed=1234)
    stage, meta = load_model_file(resolve_component(args.vae))
    if meta["arch"] != "small-vae":
        raise SystemExit(f"{args.vae}: expected a model file of the VAE stage (small-vae), got {meta['arch']}")
    stage.eval()
    scores = torch.cat([psnr_tensor(stage.reconstruct(sharp[i : i + 4])[0].clamp(0, 1), sharp[i : i + 4]) for i in range(0, len(sharp), 4)])
    print(
        f"{len(sharp)} centre crops of {args.crop}^2: reconstruction {scores.mean():.2f} dB "
        f"(worst {scores.min():.2f}, best {scores.max():.2f})"
    )


if __name__ == "__main__":
    main()

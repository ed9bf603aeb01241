"""PSNR of a DeblurDiff model file's pieces on the first N pairs of each public benchmark set.

    python scripts/anchor_probe.py runs/deblurdiff-f2-lkpn-w32/last.safetensors 4 --strengths 0.1

Per set (val_uniform, val_realistic of the shared data folder), the mean over the first N pairs of: the blurred
input; the VAE's round trip of the input; decode(z_s), the EAC's latent as anchored sampling starts from it (the
LKPN at the first of 10 timesteps on seed-0 noise); and the model's sampling from z_s at each strength (10 steps,
seed 0). Clean estimates are not clamped (clip_sample 0). Whole images, fp32, PSNR on 8-bit RGB as `unblur bench`.
"""

import argparse

import numpy as np
import torch

from unblur.data.root import data_root
from unblur.io import list_images, read_image
from unblur.metrics import psnr_tensor
from unblur.modelfile import load_model_file
from unblur.nn.layers import pad_to_multiple


def tensor(path) -> torch.Tensor:
    return torch.from_numpy(read_image(path)[0]).permute(2, 0, 1)[None].float()


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model file of deblurdiff-small")
    ap.add_argument("pairs", type=int)
    ap.add_argument("--strengths", default="", help="comma-separated strengths to sample at (from z_s)")
    args = ap.parse_args()
    strengths = [float(s) for s in args.strengths.split(",") if s]
    model = load_model_file(args.model)[0].eval()
    model.schedule.clip = 0.0
    for name in ("val_uniform", "val_realistic"):
        rows = []
        for blurred in list_images([data_root() / "bench" / name / "blur"])[: args.pairs]:
            x, y = tensor(blurred), tensor(blurred.parent.parent / "sharp" / blurred.name)
            padded, (h, w) = pad_to_multiple(x, model.multiple)
            z_cond = model.condition(padded)
            noise = torch.randn(z_cond.shape, generator=torch.Generator().manual_seed(0))
            z_s = model.anchor("zs", padded, z_cond, noise, 10)
            outs = [x, model.decode(z_cond)[..., :h, :w], model.decode(z_s)[..., :h, :w]]
            outs += [model.sample(x, 10, torch.Generator().manual_seed(0), strength=s, start="zs") for s in strengths]
            rows.append([float(psnr_tensor(o.clamp(0, 1), y)) for o in outs])
        heads = ["input", "round trip", "decode(z_s)", *(f"strength {s:g}" for s in strengths)]
        means = np.mean(rows, 0)
        print(f"{name}, {len(rows)} pairs: " + ", ".join(f"{k} {v:.2f}" for k, v in zip(heads, means)))


if __name__ == "__main__":
    main()

"""Draw docs/figures/transfer-grid.png: BD-Diff's blur transfer (`unblur transfer`), structure x blur, against the truth.

Blur sources: one photo blurred by a few camera-shake kernels of the ``uniform-kernel`` preset (noise included),
so the true transfer is known: each structure photo exposed with the same kernel in linear light. For every
structure and blur: the model's transfer and the true re-blur, each cell labelled with its PSNR against the truth;
the first column holds the structure itself, the "no transfer" floor, labelled with its PSNR against the true
re-blur by the first kernel (the table printed at the end gives every pair, and how far apart one structure's
transfers under different blurs are). Uses scikit-image's public-domain
photos (so the figure can be committed) at 128 x 128 px; needs scikit-image.

    python scripts/make_transfer_grid.py [--model bd-diff-small] [--steps N] [--seed 0]
"""

import argparse
from pathlib import Path

import numpy as np
import skimage.data
import torch
from make_blur_figure import kernel_picture

from unblur.blur.synth import UniformKernelBlur
from unblur.demo import comparison
from unblur.io import write_image
from unblur.metrics import psnr
from unblur.restore import image_tensor, tensor_image
from unblur.zoo import load_model

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
SIDE = 128


def square(photo: np.ndarray) -> np.ndarray:
    """A photo's central square, area-averaged to SIDE x SIDE, float32 in [0, 1]."""
    from PIL import Image

    h, w = photo.shape[:2]
    s = min(h, w)
    crop = photo[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s, :3]
    return np.asarray(Image.fromarray(crop).resize((SIDE, SIDE), Image.BOX), dtype=np.float32) / 255.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bd-diff-small")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(FIGURES / "transfer-grid.png"))
    args = ap.parse_args()
    model, _ = load_model(args.model, "cpu")
    steps = args.steps or model.default_steps
    structures = {name: square(getattr(skimage.data, name)()) for name in ("astronaut", "coffee", "chelsea")}
    source = square(skimage.data.rocket())
    spec = UniformKernelBlur()
    blurs = []  # (blurred source, kernel at full size, kernel size)
    for seed in (3, 11, 21):
        blurred, _, meta = spec.make(source, np.random.default_rng(seed))
        o = (spec.max_kernel - meta["kernel"].shape[0]) // 2
        full = np.pad(meta["kernel"], o)
        blurs.append((blurred, full, meta["kernel"].shape[0]))

    head = [(np.ones_like(source), "blur source ->")] + [(b, f"blur {j + 1}") for j, (b, _, _) in enumerate(blurs)]
    kernels = [(np.ones_like(source), "its kernel ->")] + [(kernel_picture(k, SIDE), f"{n} px") for _, k, n in blurs]
    rows, table, alike = [head, kernels], [], []
    for name, sharp in structures.items():
        x = torch.from_numpy(sharp).permute(2, 0, 1)[None]
        truths = [spec.expose(x, torch.from_numpy(k)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy() for _, k, _ in blurs]
        made = []
        for j, (b, _, _) in enumerate(blurs):
            with torch.no_grad():
                out = model.transfer(image_tensor(sharp), image_tensor(b), steps=steps, generator=torch.Generator().manual_seed(args.seed))
            made.append(tensor_image(out))
            table.append((name, j + 1, psnr(made[-1], truths[j]), psnr(sharp, truths[j])))
        alike += [psnr(made[i], made[j]) for i in range(len(made)) for j in range(i + 1, len(made))]
        rows.append([(sharp, f"{name}: {psnr(sharp, truths[0]):.1f} dB")] + [(m, f"BD-Diff {psnr(m, t):.1f} dB") for m, t in zip(made, truths)])
        rows.append([(np.ones_like(sharp), "true re-blur ->")] + [(t, "truth") for t in truths])
    write_image(args.out, comparison(rows, height=SIDE), overwrite=True)
    print(f"wrote {args.out} ({args.model}, {steps} steps, seed {args.seed})")
    print("structure  blur  PSNR(transfer, truth)  PSNR(structure unchanged, truth)")
    for name, j, made_db, floor_db in table:
        print(f"{name:10s} {j:4d}  {made_db:21.2f}  {floor_db:32.2f}")
    print(f"mean: transfer {np.mean([r[2] for r in table]):.2f} dB, structure unchanged {np.mean([r[3] for r in table]):.2f} dB")
    print(f"one structure's transfers under two different blurs: {np.mean(alike):.2f} dB apart (PSNR of one against the other)")


if __name__ == "__main__":
    main()

"""Does a BD-Diff model's decoupler separate blur from structure? The issue's two distances, per model file.

On the central crops of N sharp photos, each scene i is blurred by a random camera-shake kernel k_i (V),
the next scene by the same k_i (W), and scene i again by another kernel (V'): the views of the decoupling
regulariser (``BDDiff.reblurred``). Mean L2 distances per image:

- blur tokens of V: to W (another photo, the SAME blur) against its own sharp twin S, and against V'
  (the same scene, another blur): decoupled when the first is the smallest;
- structure (map and tokens) of V: to V' (two blurs of one scene) against W (one blur of two scenes):
  decoupled when the first is smaller;
- the spread of each token set across images (mean per-element std / mean |token|): near 0 is a collapse.

    python scripts/bddiff_tokens.py [MODEL ...] [--images DATA/photos/val] [-n 16] [--crop 96] [--json FILE]

MODEL: a model name or file (default bd-diff-small); DATA: the data root (unblur.data.root).
Prints one block per model and writes all of them as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from unblur.data.root import data_root
from unblur.data.synthetic import centre_crop
from unblur.io import list_images, read_image
from unblur.restore import image_tensor
from unblur.zoo import load_model


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over the batch of the L2 distance between a[i] and b[i] (any shape after the batch)."""
    return float((a - b).flatten(1).norm(dim=1).mean())


def spread(tokens: torch.Tensor) -> float:
    return float(tokens.std(0).mean() / tokens.abs().mean())


@torch.no_grad()
def measure(model, sharp: torch.Tensor, seed: int) -> dict:
    """The distances of the module docstring for ``sharp`` (N, 3, H, W) in [0, 1], N >= 2."""
    v, w = model.reblurred(sharp, torch.Generator().manual_seed(seed))
    v2, _ = model.reblurred(sharp, torch.Generator().manual_seed(seed + 1))
    s = model.decoupler.read(model.encode(sharp))
    return {
        "blur: same blur, other photo": distance(v.blur, w.blur),
        "blur: own sharp twin": distance(v.blur, s.blur),
        "blur: same photo, other blur": distance(v.blur, v2.blur),
        "structure map: one scene, two blurs": distance(v.structure_map, v2.structure_map),
        "structure map: two scenes, one blur": distance(v.structure_map, w.structure_map),
        "structure tokens: one scene, two blurs": distance(v.structure, v2.structure),
        "structure tokens: two scenes, one blur": distance(v.structure, w.structure),
        "spread: blur tokens": spread(v.blur),
        "spread: structure tokens": spread(v.structure),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["bd-diff-small"])
    ap.add_argument("--images", default=str(data_root() / "photos/val"), help="folder of sharp photos")
    ap.add_argument("-n", type=int, default=16, help="photos to read (at least 2)")
    ap.add_argument("--crop", type=int, default=96, help="side of the central crop (the training crop: 96)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kernels")
    ap.add_argument("--json", default="runs/bddiff-tokens.json", help="where the figures go")
    args = ap.parse_args()

    photos = list_images([args.images])[: args.n]  # decode only the photos used
    sharp = torch.cat([image_tensor(centre_crop(read_image(p)[0], args.crop)) for p in photos])
    results = {}
    for name in args.models:
        results[name] = measure(load_model(name)[0], sharp, args.seed)
        print(name)
        for key, value in results[name].items():
            print(f"  {key:40s} {value:8.3f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Does a BD-Diff model's decoupler separate blur from structure? Token statistics on paired crops.

For N pairs of a folder (blur/, sharp/; e.g. the experiment's target domain), reads the central crop of
both images and prints:

- the spread of each token set across images (mean per-element std / mean |token|): near 0 means the
  extractor ignores its input (the collapse the unpaired consistency could cause);
- how far the blur tokens of a blurred image are from those of its own sharp twin (same content,
  different blur) and from those of another blurred photo (other content, similar blur): a decoupled
  blur extractor puts the first far and the second near;
- how far the learned "sharp" blur tokens are from the tokens extracted from sharp and blurred images.

    python scripts/bddiff_tokens.py [--model bd-diff-small] [--pairs runs/target-realistic] [-n 16] [--crop 96]
"""

from __future__ import annotations

import argparse

import torch

from unblur.data.paired import find_pairs
from unblur.data.synthetic import centre_crop
from unblur.io import read_image
from unblur.restore import image_tensor
from unblur.zoo import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bd-diff-small")
    ap.add_argument("--pairs", default="runs/target-realistic", help="folder with blur/ and sharp/")
    ap.add_argument("-n", type=int, default=16, help="pairs to read")
    ap.add_argument("--crop", type=int, default=96, help="side of the central crop (the training crop: 96)")
    args = ap.parse_args()

    model, _ = load_model(args.model)
    pairs = find_pairs(args.pairs)[: args.n]

    def read(kind: str):
        images = torch.cat([image_tensor(centre_crop(read_image(getattr(p, kind))[0], args.crop)) for p in pairs])
        return model.decoupler.read(model.encode(images))

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm(dim=(1, 2)).mean())

    with torch.no_grad():
        blurred, sharp = read("blurred"), read("sharp")
        for kind, reading in (("blurred", blurred), ("sharp", sharp)):
            for name in ("structure", "blur"):
                t = getattr(reading, name)
                print(
                    f"{kind:8s} {name:9s} tokens: spread across images / mean |token| = {float(t.std(0).mean() / t.abs().mean()):.3f}"
                )
        print(f"blur tokens, blurred vs its own sharp twin (same content):  {distance(blurred.blur, sharp.blur):.3f}")
        print(
            f"blur tokens, blurred vs another blurred photo (same domain): {distance(blurred.blur, blurred.blur.roll(1, 0)):.3f}"
        )
        learned = model.decoupler.sharp_blur(1)
        print(
            f"learned sharp tokens vs extracted: from sharp images {distance(sharp.blur, learned):.3f}, from blurred {distance(blurred.blur, learned):.3f}"
        )


if __name__ == "__main__":
    main()

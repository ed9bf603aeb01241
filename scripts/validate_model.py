"""Score a model file (or a bundled model or component) on the crops `unblur train` validates on, as its run did.

    python scripts/validate_model.py prior-f2 --images 24 --preset uniform-kernel

The first N photos of the validation folder, one 256² centre crop each, blurred by PRESET with the engine's seed;
the method's own validation output (a prior: its one-step denoising of the sharp crop; a VAE: its reconstruction;
a restorer: its restoration) against the sharp crop: the mean PSNR, the worst and best crop's, and SSIM. Use it
to check that an exported (e.g. fp16) file scores what its run's log says.
"""

import argparse

from average_weights import score  # the engine's validation crops and scoring, shared with the soups

from unblur.modelfile import load_model_file
from unblur.zoo import COMPONENTS, resolve, resolve_component

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model file, registered model or component")
    ap.add_argument("--images", type=int, default=24, help="validation crops (data.val_images of the run)")
    ap.add_argument("--preset", default="uniform-kernel", help="blur of the crops (data.preset of the run)")
    args = ap.parse_args()
    path = resolve_component(args.model) if args.model in COMPONENTS else resolve(args.model)
    scores = score(load_model_file(path)[0], args.images, args.preset)
    print(
        f"{args.model}: {scores['psnr']:.3f} dB on {args.images} crops "
        f"(worst {scores['psnr_worst']:.2f}, best {scores['psnr_best']:.2f}; SSIM {scores['ssim']:.4f})"
    )

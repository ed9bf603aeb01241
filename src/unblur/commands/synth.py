"""`unblur synth`: make a reproducible blurred/sharp benchmark from a folder of sharp photos."""

from __future__ import annotations

import json
import time
from pathlib import Path

from unblur.cli import UsageError


def add_parser(sub) -> None:
    s = sub.add_parser(
        "synth",
        help="make blurred/sharp pairs from sharp photos",
        description="Write OUT/blur, OUT/sharp, OUT/meta.jsonl (and OUT/kernel for uniform-kernel); "
        "pair k of photo i is seeded with [SEED, i, k], so the same command gives the same files.",
    )
    s.add_argument("sharp_dir", metavar="SHARP_DIR")
    s.add_argument("-o", "--output", required=True, metavar="OUT")
    s.add_argument("--preset", default="uniform-kernel", help="uniform-kernel, camera-shake, gopro-like or realistic")
    s.add_argument("--per-image", type=int, default=1, metavar="K", help="pairs per photo (default 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from unblur.atomic import atomic_write
    from unblur.blur.synth import PRESETS
    from unblur.io import ImageError, list_images, read_image, write_image

    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset '{args.preset}' (known: {', '.join(PRESETS)})")
    out = Path(args.output)
    if (out / "meta.jsonl").exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a set (use --overwrite to replace it)")
    photos = list_images([args.sharp_dir]) if Path(args.sharp_dir).is_dir() else []
    if not photos:
        raise UsageError(f"no images in {args.sharp_dir}")
    spec = PRESETS[args.preset]()
    lines, failed, pixels, t0 = [], [], 0, time.time()
    for i, photo in enumerate(tqdm(photos, desc=f"synth {args.preset}", unit="img", disable=args.quiet)):
        try:
            sharp, _ = read_image(photo)
        except ImageError as err:
            failed.append(str(err))
            continue
        for k in range(args.per_image):
            name = f"{photo.stem}_{k}"
            blurred, target, meta = spec.make(sharp, np.random.default_rng([args.seed, i, k]))
            write_image(out / "blur" / f"{name}.png", blurred, overwrite=True, compress_level=1)
            write_image(out / "sharp" / f"{name}.png", target, overwrite=True, compress_level=1)
            if "kernel" in meta:
                (out / "kernel").mkdir(exist_ok=True)
                with atomic_write(out / "kernel" / f"{name}.npy", suffix=".npy") as tmp:
                    np.save(tmp, meta.pop("kernel"))
            lines.append(json.dumps({"name": name, "source": photo.name, "seed": [args.seed, i, k], **meta}))
            pixels += blurred.shape[0] * blurred.shape[1]
    with atomic_write(out / "meta.jsonl") as tmp:  # written last: its presence marks a finished set
        Path(tmp).write_text("\n".join(lines) + "\n")
    seconds = time.time() - t0
    print(f"{len(lines)} pairs in {out} ({pixels / 1e6:.1f} MP of output in {seconds:.1f} s: {pixels / 1e6 / seconds:.2f} MP/s)")
    for reason in failed:
        print(f"unblur: failed: {reason}")
    return 1 if failed else 0

"""Measure a model on (1) our synthetic val pairs and (2) the public val_uniform benchmark.

(1): every photo of --val (default DATA/photos/val, DATA the data root) blurred whole by our
synthesizer with generator seed [--seed, index], once per preset of --presets
(default uniform-kernel; e.g. --presets uniform-kernel,realistic);
(2): the fixed blurred/sharp pairs of --bench. PSNR on 8-bit RGB, no crop.

    python scripts/eval_default.py [--model nafnet-small] [--json out.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from unblur.data.paired import load_pairs
from unblur.data.root import data_root
from unblur.data.synthetic import blurred_photos
from unblur.metrics import psnr
from unblur.restore import Restorer


def evaluate(pairs, restorer):
    rows = []
    for name, blurred, sharp in pairs:
        t0 = time.time()
        out = restorer.restore(blurred)
        rows.append(
            {
                "image": name,
                "blurred": psnr(blurred, sharp),
                "restored": psnr(out, sharp),
                "seconds": time.time() - t0,
                "megapixels": blurred.shape[0] * blurred.shape[1] / 1e6,
            }
        )
        r = rows[-1]
        print(f"  {name:60s} {r['blurred']:6.2f} -> {r['restored']:6.2f} dB ({r['restored'] - r['blurred']:+.2f})", flush=True)
    b, o = np.mean([r["blurred"] for r in rows]), np.mean([r["restored"] for r in rows])
    worse = [r["image"] for r in rows if r["restored"] <= r["blurred"]]
    spm = sum(r["seconds"] for r in rows) / sum(r["megapixels"] for r in rows)
    print(
        f"  mean: blurred {b:.2f} dB, restored {o:.2f} dB, gain {o - b:+.2f} dB; not improved: {len(worse)} of {len(rows)} {worse}; {spm:.2f} s/MP"
    )
    return {
        "mean_blurred": b,
        "mean_restored": o,
        "gain": o - b,
        "not_improved": worse,
        "seconds_per_megapixel": spm,
        "rows": rows,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--val", default=str(data_root() / "photos/val"))
    ap.add_argument("--bench", default=str(data_root() / "bench/val_uniform"), help="'' to skip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--presets", default="uniform-kernel", help="comma-separated; '' for none")
    ap.add_argument("--crop", type=int, default=0, help="score only the centre crop of each synthetic pair (0: whole)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    restorer = Restorer(args.model, device=args.device)
    result = {}
    for preset in filter(None, args.presets.split(",")):
        crop = f", centre {args.crop}x{args.crop}" if args.crop else ""
        print(f"synthetic val pairs ({args.val}, {preset}, seed {args.seed}{crop}):")
        key = "synthetic_val" if preset == "uniform-kernel" else f"synthetic_val_{preset}"
        result[key] = evaluate(blurred_photos(args.val, preset, args.seed, args.crop), restorer)
    if args.bench:
        print(f"benchmark pairs ({args.bench}):")
        result["val_uniform"] = evaluate(load_pairs(args.bench), restorer)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))

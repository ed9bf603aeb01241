"""Re-save a trained model file (e.g. a run's best.safetensors) for shipping, optionally as fp16.

python scripts/export_model.py runs/nafnet-small/best.safetensors src/unblur/zoo/weights/nafnet-small.safetensors --half --overwrite

An existing DST is replaced only with --overwrite (shipping a new version of a bundled file asks for it).
"""

import argparse
import sys
from pathlib import Path

from unblur.modelfile import load_model_file, save_model_file

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--half", action="store_true", help="store fp16 (half the size; loaded back as fp32)")
    ap.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    args = ap.parse_args()
    if Path(args.dst).exists() and not args.overwrite:
        sys.exit(f"error: {args.dst} exists (pass --overwrite to replace it)")
    model, meta = load_model_file(args.src)
    info = {k: v for k, v in meta.items() if k not in ("arch", "config")}
    save_model_file(args.dst, model, meta["arch"], info, half=args.half)
    print(f"{args.src} -> {args.dst} ({meta['arch']} {meta['config']}, {info})")

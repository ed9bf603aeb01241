"""Re-save a trained model file (e.g. a run's best.safetensors) for shipping, optionally as fp16, optionally with
inference-only constructor arguments changed (ones that leave the weights as they are, e.g. NAFNet's sca_window).

python scripts/export_model.py runs/nafnet-small/best.safetensors src/unblur/zoo/weights/nafnet-small.safetensors --half
python scripts/export_model.py runs/nafnet-real-world-3/last.safetensors out.safetensors --half --set sca_window=240
"""

import argparse

import yaml

from unblur.methods import build
from unblur.modelfile import load_model_file, save_model_file

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--half", action="store_true", help="store fp16 (half the size; loaded back as fp32)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="constructor argument (YAML value)")
    args = ap.parse_args()
    model, meta = load_model_file(args.src)
    if args.set:
        changes = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
        unknown = sorted(set(changes) - set(model.config))
        if unknown:
            ap.error(f"{meta['arch']} has no argument {unknown[0]!r}")
        rebuilt = build(meta["arch"], {**meta["config"], **changes})
        rebuilt.load_state_dict(model.state_dict())  # strict: the change must leave the weights' names and shapes
        model = rebuilt
    info = {k: v for k, v in meta.items() if k not in ("arch", "config")}
    save_model_file(args.dst, model, meta["arch"], info, half=args.half)
    print(f"{args.src} -> {args.dst} ({meta['arch']} {model.config}, {info})")

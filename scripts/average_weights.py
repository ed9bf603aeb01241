"""Average the weights of model files of one network (a uniform "model soup", Wortsman et al. 2022).

Runs fine-tuned from one file usually sit in one basin of the loss, so their mean can beat each of
them at no cost at inference. With --val the inputs and their mean are scored on the training
engine's validation crops (the first N photos of the validation folder, one centre crop each, blurred
by PRESET with the engine's seed), so a soup is only shipped when it measures better.

python scripts/average_weights.py runs/a/last.safetensors runs/b/last.safetensors -o soup.safetensors --val 12
"""

import argparse
import json
from pathlib import Path

import torch

from unblur.modelfile import load_model_file, save_model_file


def average(paths: list[str]) -> tuple[torch.nn.Module, dict]:
    """The first file's model holding the mean of every file's floating-point tensors (in fp32), and its
    metadata. ValueError when the files are not one network (architecture and config)."""
    model, meta = load_model_file(paths[0])
    states = [model.state_dict()]
    for path in paths[1:]:
        other, other_meta = load_model_file(path)
        if (other_meta["arch"], other_meta["config"]) != (meta["arch"], meta["config"]):
            raise ValueError(f"{path} is not the same network as {paths[0]}: {other_meta['arch']} {other_meta['config']}")
        states.append(other.state_dict())
    mean = {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
        for k, v in states[0].items()
    }
    model.load_state_dict(mean)
    return model, meta


def score(model: torch.nn.Module, images: int, preset: str) -> dict:
    """Validation scores on the crops `unblur train` validates on (DEFAULTS' folder, crop and seed): the engine's
    ``validate`` dict (mean ``psnr`` in dB, ``ssim``, ``psnr_worst``, ``psnr_best``)."""
    from unblur.data.root import data_path
    from unblur.data.synthetic import fixed_pairs, load_folder
    from unblur.train.config import DEFAULTS
    from unblur.train.loop import validate

    data = DEFAULTS["data"]
    photos = load_folder(data_path(data["val"]))[:images]
    blurred, sharp = fixed_pairs(photos, data["val_crop"], seed=1234, preset=preset)
    return validate(model.float(), blurred, sharp, "cpu")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files of one network")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--half", action="store_true", help="store fp16")
    ap.add_argument("--val", type=int, default=0, metavar="N", help="score inputs and mean on N validation crops")
    ap.add_argument("--preset", default="realistic", help="blur of the validation crops (default realistic)")
    args = ap.parse_args()
    if len(args.models) < 2:
        ap.error("give at least two model files")
    if Path(args.output).exists():
        ap.error(f"{args.output} exists; remove it first")
    try:
        soup, meta = average(args.models)
    except ValueError as e:
        ap.error(str(e))
    info = {k: v for k, v in meta.items() if k not in ("arch", "config")}
    info["averaged"] = [str(p) for p in args.models]
    save_model_file(args.output, soup, meta["arch"], info, half=args.half)
    print(f"mean of {len(args.models)} files -> {args.output}")
    if args.val:
        scores = {p: score(load_model_file(p)[0], args.val, args.preset)["psnr"] for p in args.models}
        scores[args.output] = score(load_model_file(args.output)[0], args.val, args.preset)["psnr"]
        print(json.dumps({k: round(v, 3) for k, v in scores.items()}, indent=1))

"""BD-Diff's unknown-domain claim at our scale: task 1 alone vs all three tasks, same steps, data and seeds.

Source domain: uniform-kernel pairs made on the fly from the training photos. Target domain: the
`realistic` preset (6-DoF shake, clipping, noise, JPEG) on DATA/photos/val (DATA: the data root), made once with
`unblur synth`; only its BLURRED images enter training (``data.target``, used by tasks 2 and 3); its
sharp images score both models afterwards, on centre crops, with `unblur bench`.

    python scripts/bddiff_experiment.py [--steps 1000] [--crop 256]

The arms can train in parallel (``--arms task1-only`` and ``--arms three-tasks`` in two processes);
the report is written when every arm has finished (a last run with all arms, which trains nothing).

Needs the trained VAE (runs/vae-small, see src/unblur/configs/bddiff/small.yaml). Resumable: a
finished arm is not trained again, finished images are not scored again. Writes the report to
docs/bddiff/ (--out) and each arm's model file next to its run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from unblur.data.paired import find_pairs
from unblur.data.root import data_root
from unblur.data.synthetic import centre_crop
from unblur.io import read_image, write_image
from unblur.modelfile import read_model_meta
from unblur.train.config import load_config
from unblur.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"task1-only": ["model.w_transfer=0", "model.w_recon=0"], "three-tasks": []}


def centre_crops(src: Path, dst: Path, size: int) -> Path:
    """dst/{blur,sharp}/NAME.png: the central size x size window of every pair of src (written once)."""
    for pair in find_pairs(src):
        for kind, path in (("blur", pair.blurred), ("sharp", pair.sharp)):
            out = dst / kind / f"{pair.name}.png"
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                rgb, info = read_image(path)
                # overwrite: a parallel arm may have written the same crop meanwhile (atomic, identical)
                write_image(out, np.ascontiguousarray(centre_crop(rgb, size)), info, overwrite=True)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "src/unblur/configs/bddiff/small.yaml"))
    ap.add_argument("--val", default=str(data_root() / "photos/val"), help="photos of the target domain")
    ap.add_argument("--target", default="runs/target-realistic", help="where `unblur synth` writes the target domain")
    ap.add_argument("--runs", default="runs/bddiff-experiment")
    ap.add_argument("--out", default="docs/bddiff", help="report folder (run from the repository root)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps of each arm (default: the config's)")
    ap.add_argument("--crop", type=int, default=256, help="side of the centre crops that are scored")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"which arms to train (of {','.join(ARMS)})")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", action="append", default=[], help="override for both arms, e.g. data.batch=4")
    args = ap.parse_args()

    target, runs = Path(args.target).resolve(), Path(args.runs)  # absolute: relative data paths are read below the data root
    if not (target / "blur").is_dir():
        cmd = ["synth", args.val, "-o", str(target), "--preset", "realistic", "-q"]
        subprocess.run([sys.executable, "-m", "unblur", *cmd], check=True)
    crops = centre_crops(target, runs / f"target-crops-{args.crop}", args.crop)

    arms = args.arms.split(",")
    if unknown := set(arms) - set(ARMS):
        ap.error(f"unknown arms {sorted(unknown)}: choose from {', '.join(ARMS)}")
    models = []
    for arm in arms:
        overrides = ARMS[arm]
        extra = [f"data.target={target / 'blur'}", f"train.device={args.device}", *overrides, *args.set]
        cfg = load_config(args.config, extra + ([f"optim.steps={args.steps}"] if args.steps else []))
        run = runs / arm
        last = run / "last.safetensors"
        if not (last.exists() and read_model_meta(last).get("step") == cfg["optim"]["steps"]):
            print(f"== {arm}: {cfg['optim']['steps']} steps", flush=True)
            train(cfg, run, resume="auto")
        model = runs / f"{arm}.safetensors"  # the report names each row by its file
        shutil.copyfile(last, model)
        models.append(str(model))
    if set(arms) != set(ARMS):
        return  # the report compares every arm

    bench = ["bench", "--data", str(crops), "--models", ",".join(models), "--out", args.out, "--device", args.device, "-q"]
    subprocess.run([sys.executable, "-m", "unblur", *bench], check=True)


if __name__ == "__main__":
    main()

"""BlurDM plugged into a trained backbone, against the same backbone fine-tuned alone for the same compute.

The paper's practical promise: add BlurDM to a network that is already trained. Arm ``blurdm`` runs the
config's three stages (stage 1 starts from ``train.init``, a plain backbone model file, with every prior
modulation at the identity, so it starts exactly at that network's output). Arm ``baseline`` fine-tunes the
same backbone from the same file on the same data stream with the same loss at stage 1's learning rate,
for as many optimizer steps as take the CPU time the three BlurDM stages took together, timed per step in
this script on one core (``probe``): equal compute, the baseline seeing more samples.

Both arms log their validation PSNR (``train.val_every``) against steps and seconds: the learning curves.
The finished models are scored with ``unblur bench`` on ``val_uniform`` and ``val_realistic``; the curves are
drawn in ``OUT/curves.png`` and everything is written to ``OUT/results.json``. Run again, the script resumes:
finished stages, arms and benchmark images are not recomputed.

    OMP_NUM_THREADS=1 python scripts/blurdm_plug.py --config src/unblur/configs/blurdm/nafnet-plug.yaml --out docs/blurdm/plug
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from unblur.bench.report import plot_curves
from unblur.data.root import data_root
from unblur.train.config import load_config
from unblur.train.loop import train
from unblur.train.stages import stage_configs, train_stages


def baseline_config(blurdm: dict, steps: int) -> dict:
    """The backbone alone: BlurDM's data, loss, seed and init, stage 1's optimiser, ``steps`` steps."""
    cfg = copy.deepcopy({k: v for k, v in blurdm.items() if k != "stages"})
    cfg["model"] = {"arch": blurdm["model"]["backbone"], **blurdm["model"]["backbone_config"]}
    first = stage_configs(blurdm)[0]
    cfg["optim"] = {**first["optim"], "steps": steps}
    cfg["stages"] = []
    return cfg


def probe(cfg: dict, run_dir: Path, steps: int = 30, skip: int = 6) -> float:
    """Seconds per optimizer step of ``cfg`` on this machine (mean over ``steps - skip`` steps after a warm-up).
    Every probe must see the same conditions as the others (nothing starting or stopping beside it): our first
    12-step probes overlapped other processes starting on the other core and put the backbone alone at
    1.17 s/step, 65 % above the 0.71 s/step of these probes in the conditions its run had."""
    cfg = copy.deepcopy(cfg)
    cfg["optim"]["steps"] = steps
    cfg["data"]["val"] = ""
    cfg["train"].update(ckpt_every=10**9, log_every=1, tensorboard=False)
    train(cfg, run_dir, quiet=True)
    with open(run_dir / "log.csv") as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in rows]
    return (seconds[-1] - seconds[skip - 1]) / (steps - skip)


def curve(run_dir: Path, offset_s: float = 0.0, offset_steps: int = 0) -> list[dict]:
    """(step, seconds, val PSNR) rows of a run's log with validation, shifted by the stages before it."""
    with open(run_dir / "log.csv") as f:
        return [
            {"step": int(r["step"]) + offset_steps, "seconds": float(r["seconds"]) + offset_s, "val_psnr": float(r["val_psnr"])}
            for r in csv.DictReader(f)
            if r.get("val_psnr")
        ]


def bench(models: dict, data: Path, out: Path) -> dict:
    """``unblur bench`` of each model file on ``data``: name -> mean PSNR."""
    scores = {}
    for name, path in models.items():
        subprocess.run(
            [sys.executable, "-m", "unblur", "bench", "--data", str(data), "--models", str(path), "--out", str(out / name), "-q"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results = json.loads((out / name / "results.json").read_text())
        scores[name] = {"psnr": results["summary"][str(path)]["psnr"], "blurred": results["summary"]["identity"]["psnr"]}
    return scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="a three-stage BlurDM config whose train.init is a plain backbone file")
    ap.add_argument("--runs", default="runs/blurdm-plug")
    ap.add_argument("--out", default="docs/blurdm/plug")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(args.config, args.set)
    runs, out = Path(args.runs), Path(args.out)
    runs.mkdir(parents=True, exist_ok=True)

    # 1. cost per step of each stage and of the backbone alone, measured one after the other on this core
    costs_file = runs / "costs.json"
    if not costs_file.exists():
        costs = {f"stage-{k}": probe(c, runs / f"probe-stage-{k}") for k, c in enumerate(stage_configs(cfg), start=1)}
        costs["baseline"] = probe(baseline_config(cfg, 12), runs / "probe-baseline")
        costs_file.write_text(json.dumps(costs, indent=1))
    costs = json.loads(costs_file.read_text())
    stage_steps = [c["optim"]["steps"] for c in stage_configs(cfg)]
    blurdm_seconds = sum(costs[f"stage-{k}"] * n for k, n in enumerate(stage_steps, start=1))
    base_steps = round(blurdm_seconds / costs["baseline"])
    print(f"costs (s/step): {costs}; BlurDM {stage_steps} steps = {blurdm_seconds:.0f} s -> baseline {base_steps} steps", flush=True)

    # 2. the two arms (each resumes where it stopped)
    t0 = time.time()
    train_stages(cfg, runs / "blurdm", resume="auto", quiet=True)
    train(baseline_config(cfg, base_steps), runs / "baseline", resume="auto", quiet=True)
    print(f"trained in {time.time() - t0:.0f} s", flush=True)

    # 3. learning curves on the engine's validation crops; time axis from the per-step costs (the wall clock of a
    # shared machine is not a fair axis), steps as samples
    curves = {"baseline": [{**r, "seconds": r["step"] * costs["baseline"]} for r in curve(runs / "baseline")]}
    blurdm, done_s, done_steps = [], 0.0, 0
    for k, n in enumerate(stage_steps, start=1):
        blurdm += [
            {**r, "stage": k, "seconds": done_s + (r["step"] - done_steps) * costs[f"stage-{k}"]}
            for r in curve(runs / "blurdm" / f"stage-{k}", offset_steps=done_steps)
        ]
        done_s, done_steps = done_s + n * costs[f"stage-{k}"], done_steps + n
    curves["blurdm"] = blurdm

    # 4. the finished models on both public sets
    root = data_root()
    models = {"baseline": runs / "baseline" / "last.safetensors", "blurdm": runs / "blurdm" / "last.safetensors"}
    scores = {s: bench(models, root / "bench" / s, runs / f"bench-{s}") for s in ("val_uniform", "val_realistic")}
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": args.config, "costs": costs, "stage_steps": stage_steps, "baseline_steps": base_steps,
              "curves": curves, "scores": scores}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    plot_curves(
        out / "curves.png",
        {name: [(r["seconds"] / 60, r["val_psnr"]) for r in rows] for name, rows in curves.items()},
        "CPU minutes (measured seconds per step x steps)",
        "validation PSNR (dB)",
    )
    print(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

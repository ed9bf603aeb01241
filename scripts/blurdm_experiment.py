"""BlurDM's headline claim at our scale: backbone alone vs backbone + BlurDM, equal budget.

For each backbone, the config src/unblur/configs/blurdm/<backbone>.yaml defines the BlurDM run
(three stages); the baseline is derived from it here so that the two cannot drift apart: the
same backbone size, data (the same batches, in the same order: the stages continue one data
stream), crops, loss, seed, and as many optimizer steps in total, at stage 1's learning rate.
Both are measured on (1) DATA/bench/val_uniform and (2) the realistic preset applied to
every photo of DATA/photos/val (DATA: the data root, see unblur.data.root) (seed [0, i], whole photos; never seen in training).
Runs resume where they stopped; the report goes to docs/blurdm/README.md.

Arm ``exposure`` (``--arms baseline,blurdm,exposure``) adds our option: the BlurDM run again with
src/unblur/configs/blurdm/<backbone>-exposure.yaml, which must equal <backbone>.yaml except for
``exposure_weight`` (the same steps, data and seeds); its stage 1, which the option does not change,
is the BlurDM arm's, copied, so the two arms differ from stage 2 on only.

    python scripts/blurdm_experiment.py [--backbones nafnet,mimo-unet-plus] [--arms baseline,blurdm,exposure]
"""

import argparse
import copy
import json
import shutil
import time
from pathlib import Path

import numpy as np

from unblur.data.paired import load_pairs
from unblur.data.root import data_root
from unblur.data.synthetic import blurred_photos
from unblur.metrics import psnr, ssim
from unblur.nn import cost
from unblur.restore import Restorer
from unblur.train.config import load_config
from unblur.train.loop import train
from unblur.train.stages import finished, stage_configs, train_stages

ROOT = Path(__file__).resolve().parents[1]


def baseline_config(blurdm: dict) -> dict:
    cfg = copy.deepcopy({k: v for k, v in blurdm.items() if k != "stages"})
    cfg["model"] = {"arch": blurdm["model"]["backbone"], **blurdm["model"]["backbone_config"]}
    cfg["optim"]["steps"] = sum(stage["optim"]["steps"] for stage in blurdm["stages"])
    cfg["optim"]["lr"] = blurdm["stages"][0]["optim"]["lr"]
    cfg["stages"] = []
    return cfg


def without_exposure(cfg: dict) -> dict:
    """``cfg`` with every ``model.exposure_weight`` (top level and stages) removed."""
    out = copy.deepcopy(cfg)
    for section in [out, *out["stages"]]:
        section.get("model", {}).pop("exposure_weight", None)
    return out


def share_stage_1(blurdm: dict, exposure: dict, source: Path, target: Path) -> None:
    """Start the exposure arm from the BlurDM arm's finished stage 1 when their stage-1 configs are
    identical (the option acts in stages 2 and 3 only): not trained twice, and the same weights."""
    first = stage_configs(blurdm)[0]
    if first == stage_configs(exposure)[0] and finished(source, first["optim"]["steps"]) and not target.exists():
        shutil.copytree(source, target)


def limit_steps(cfg: dict, most: int) -> dict:
    """A quick check of the whole pipeline: every stage's steps (and warm-up) capped at ``most``."""
    for stage in cfg["stages"]:
        stage["optim"]["steps"] = min(stage["optim"]["steps"], most)
        stage["optim"]["warmup"] = min(stage["optim"].get("warmup", cfg["optim"]["warmup"]), most)
    cfg["optim"]["warmup"] = min(cfg["optim"]["warmup"], most)
    return cfg


def val_sets(bench: Path, val: Path, limit: int | None = None) -> dict:
    return {
        "val_uniform": list(load_pairs(bench, limit)),
        "realistic val": list(blurred_photos(val, "realistic", 0, limit=limit)),
    }


def measure(path: Path, sets: dict, device: str, prior: str = "tile") -> dict:
    restorer = Restorer(path, device=device, prior=prior)
    params, gmacs = cost(restorer.model)
    out = {"params_m": params, "gmacs": gmacs}
    seconds = megapixels = 0.0
    for name, pairs in sets.items():
        scores = []
        for _, blurred, sharp in pairs:
            t0 = time.perf_counter()
            restored = restorer.restore(blurred)
            seconds += time.perf_counter() - t0
            megapixels += blurred.shape[0] * blurred.shape[1] / 1e6
            scores.append((psnr(restored, sharp), ssim(restored, sharp)))
        out[name] = {"psnr": float(np.mean([s[0] for s in scores])), "ssim": float(np.mean([s[1] for s in scores]))}
    out["s_per_mp"] = seconds / megapixels
    return out


LABELS = {
    "baseline": "{}",
    "blurdm": "{} + BlurDM",
    "blurdm-image-prior": "{} + BlurDM, one prior per image",
    "exposure": "{} + BlurDM + exposure supervision",
}


def gain_lines(results: dict, sets: list, kind: str, reference: str) -> list[str]:
    """'- backbone: set +x.xx, ...' (dB PSNR of ``kind`` over ``reference``) for backbones that ran both."""
    return [
        f"- {backbone}: " + ", ".join(f"{s} {arms[kind][s]['psnr'] - arms[reference][s]['psnr']:+.2f}" for s in sets)
        for backbone, arms in results.items()
        if kind in arms and reference in arms
    ]


def report(results: dict, identity: dict, configs: dict, out: Path) -> None:
    sets = list(identity)
    exposure = any("exposure" in arms for arms in results.values())
    lines = [
        "# BlurDM at equal training budget",
        "",
        "Made by `python scripts/blurdm_experiment.py`. Each backbone is trained alone and with BlurDM on the same",
        "batches (uniform-kernel preset on the data root's photos/train, 128² crops, batch 8) for the same number of optimizer",
        "steps; BlurDM spends them on its three stages. PSNR: RGB, 8-bit, no crop; SSIM: BasicSR variant.",
        "`val_uniform`: the 48 public benchmark pairs; `realistic val`: the `realistic` preset (non-uniform shake,",
        "saturation, Poisson-Gaussian noise, JPEG) on the 24 photos of the data root's photos/val, whole. GMACs at 256²",
        "include BlurDM's blur encoder and its 5 diffusion steps (the sharp encoder only trains).",
        *(
            [
                "`+ exposure supervision`: the same BlurDM run (same stage 1, copied; same batches and seeds) with our",
                "option: stage 2 also supervises every reverse step with the synthesizer's partial exposures",
                "(`exposure_weight` in src/unblur/configs/blurdm/<backbone>-exposure.yaml; docs/methods/blurdm.md).",
            ]
            if exposure
            else []
        ),
        "",
        "| model | steps | params (M) | GMACs @256² | " + " | ".join(f"{s} PSNR | {s} SSIM" for s in sets) + " | CPU s/MP |",
        "|---|---|---|---|" + "---|---|" * len(sets) + "---|",
        "| blurred input | | | | " + " | ".join(f"{identity[s]['psnr']:.2f} | {identity[s]['ssim']:.4f}" for s in sets) + " | |",
    ]
    for backbone, arms in results.items():
        for kind, label in LABELS.items():
            if kind not in arms:
                continue
            r = arms[kind]
            lines.append(
                f"| {label.format(backbone)} | {configs[backbone][kind.removesuffix('-image-prior')]} | {r['params_m']:.2f} | "
                f"{r['gmacs']:.2f} | "
                + " | ".join(f"{r[s]['psnr']:.2f} | {r[s]['ssim']:.4f}" for s in sets)
                + f" | {r['s_per_mp']:.2f} |"
            )
    lines += [
        "",
        "Photos larger than 512 px are restored in overlapping 512² tiles. BlurDM's prior is then computed per tile",
        "(as the authors do) or once per image (blur-encoder features pooled over all tiles, one diffusion).",
        "",
        "Gain from BlurDM (dB PSNR; per-tile prior):",
        "",
        *gain_lines(results, sets, "blurdm", "baseline"),
        "",
        "One prior per image instead of per tile (dB PSNR):",
        "",
        *gain_lines(results, sets, "blurdm-image-prior", "blurdm"),
    ]
    if exposure:
        lines += [
            "",
            "Gain from the exposure supervision over BlurDM (dB PSNR):",
            "",
            *gain_lines(results, sets, "exposure", "blurdm"),
        ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"identity": identity, "results": results}, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="nafnet,mimo-unet-plus")
    ap.add_argument("--arms", default="baseline,blurdm", help="of baseline, blurdm, exposure (BlurDM with our option)")
    ap.add_argument("--runs", default="runs/blurdm-experiment")
    ap.add_argument("--out", default=str(ROOT / "docs" / "blurdm"))
    ap.add_argument("--bench", default=str(data_root() / "bench/val_uniform"))
    ap.add_argument("--val", default=str(data_root() / "photos/val"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=None, help="measure on the first N pairs of each set only (a quick check)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap every stage at N steps (a quick check, not a result)")
    ap.add_argument("--set", action="append", default=[], help="override for every run's config, e.g. train.device=cpu")
    args = ap.parse_args()
    arms = args.arms.split(",")
    if set(arms) - {"baseline", "blurdm", "exposure"}:
        ap.error(f"unknown arms in --arms {args.arms}")
    runs, results, configs = Path(args.runs), {}, {}
    config_dir = ROOT / "src" / "unblur" / "configs" / "blurdm"

    def load(path: Path) -> dict:
        cfg = load_config(path, args.set)
        return limit_steps(cfg, args.max_steps) if args.max_steps else cfg

    for backbone in args.backbones.split(","):
        cfg = load(config_dir / f"{backbone}.yaml")
        base = baseline_config(cfg)
        stages = "+".join(str(s["optim"]["steps"]) for s in cfg["stages"])
        configs[backbone] = {"baseline": base["optim"]["steps"], "blurdm": stages, "exposure": stages}
        run = runs / backbone
        if "baseline" in arms:
            print(f"== {backbone}: backbone alone, {base['optim']['steps']} steps", flush=True)
            train(base, run / "baseline", resume="auto")
        if "blurdm" in arms:
            print(f"== {backbone}: + BlurDM, stages of {stages} steps", flush=True)
            train_stages(cfg, run / "blurdm", resume="auto")
        if "exposure" in arms:
            path = config_dir / f"{backbone}-exposure.yaml"
            exposure = load(path)
            if without_exposure(exposure) != without_exposure(cfg):
                raise ValueError(f"{path} must equal {backbone}.yaml but for model.exposure_weight (same steps, data, seeds)")
            share_stage_1(cfg, exposure, run / "blurdm" / "stage-1", run / "exposure" / "stage-1")
            print(f"== {backbone}: + BlurDM + exposure supervision, stages of {stages} steps", flush=True)
            train_stages(exposure, run / "exposure", resume="auto")
    print("== measuring", flush=True)
    sets = val_sets(Path(args.bench), Path(args.val), args.limit)
    identity = {
        name: {
            "psnr": float(np.mean([psnr(b, s) for _, b, s in pairs])),
            "ssim": float(np.mean([ssim(b, s) for _, b, s in pairs])),
        }
        for name, pairs in sets.items()
    }
    for backbone in configs:
        results[backbone] = {kind: measure(runs / backbone / kind / "last.safetensors", sets, args.device) for kind in arms}
        if "blurdm" in arms:  # photos larger than a tile (512 px): BlurDM's prior per tile (above) or once per image
            results[backbone]["blurdm-image-prior"] = measure(
                runs / backbone / "blurdm" / "last.safetensors", sets, args.device, "image"
            )
        print(backbone, json.dumps(results[backbone]), flush=True)
    report(results, identity, configs, Path(args.out))
    print(f"wrote {args.out}/README.md")

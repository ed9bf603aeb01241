"""BlurDM's headline claim at our scale: backbone alone vs backbone + BlurDM, equal budget.

For each backbone, the config src/unblur/configs/blurdm/<backbone>.yaml defines the BlurDM run
(three stages); the baseline is derived from it here so that the two cannot drift apart: the
same backbone size, data (the same batches, in the same order: the stages continue one data
stream), crops, loss, seed, and as many optimizer steps in total, at stage 1's learning rate.
Both are measured on (1) ../shared/bench/val_uniform and (2) the realistic preset applied to
every photo of ../shared/photos/val (seed [0, i], whole photos; never seen in training).
Runs resume where they stopped; the report goes to docs/blurdm/README.md.

    python scripts/blurdm_experiment.py [--backbones nafnet,mimo-unet-plus] [--device cpu]
"""

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

from unblur.data.paired import load_pairs
from unblur.data.synthetic import blurred_photos
from unblur.metrics import psnr, ssim
from unblur.nn import cost
from unblur.restore import Restorer
from unblur.train.config import load_config
from unblur.train.loop import train
from unblur.train.stages import train_stages

ROOT = Path(__file__).resolve().parents[1]


def baseline_config(blurdm: dict) -> dict:
    cfg = copy.deepcopy({k: v for k, v in blurdm.items() if k != "stages"})
    cfg["model"] = {"arch": blurdm["model"]["backbone"], **blurdm["model"]["backbone_config"]}
    cfg["optim"]["steps"] = sum(stage["optim"]["steps"] for stage in blurdm["stages"])
    cfg["optim"]["lr"] = blurdm["stages"][0]["optim"]["lr"]
    cfg["stages"] = []
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


def report(results: dict, identity: dict, configs: dict, out: Path) -> None:
    sets = list(identity)
    lines = [
        "# BlurDM at equal training budget",
        "",
        "Made by `python scripts/blurdm_experiment.py`. Each backbone is trained alone and with BlurDM on the same",
        "batches (uniform-kernel preset on ../shared/photos/train, 128² crops, batch 8) for the same number of optimizer",
        "steps; BlurDM spends them on its three stages. PSNR: RGB, 8-bit, no crop; SSIM: BasicSR variant.",
        "`val_uniform`: the 48 public benchmark pairs; `realistic val`: the `realistic` preset (non-uniform shake,",
        "saturation, Poisson-Gaussian noise, JPEG) on the 24 photos of ../shared/photos/val, whole. GMACs at 256²",
        "include BlurDM's blur encoder and its 5 diffusion steps (the sharp encoder only trains).",
        "",
        "| model | steps | params (M) | GMACs @256² | " + " | ".join(f"{s} PSNR | {s} SSIM" for s in sets) + " | CPU s/MP |",
        "|---|---|---|---|" + "---|---|" * len(sets) + "---|",
        "| blurred input | | | | " + " | ".join(f"{identity[s]['psnr']:.2f} | {identity[s]['ssim']:.4f}" for s in sets) + " | |",
    ]
    for backbone, pair in results.items():
        for kind in ("baseline", "blurdm", "blurdm-image-prior"):
            r = pair[kind]
            label = {
                "baseline": backbone,
                "blurdm": f"{backbone} + BlurDM",
                "blurdm-image-prior": f"{backbone} + BlurDM, one prior per image",
            }[kind]
            lines.append(
                f"| {label} | {configs[backbone][kind.split('-')[0]]} | {r['params_m']:.2f} | {r['gmacs']:.2f} | "
                + " | ".join(f"{r[s]['psnr']:.2f} | {r[s]['ssim']:.4f}" for s in sets)
                + f" | {r['s_per_mp']:.2f} |"
            )
    lines += [
        "",
        "Photos larger than 512 px are restored in overlapping 512² tiles. BlurDM's prior is then computed per tile",
        "(as the authors do) or once per image (blur-encoder features pooled over all tiles, one diffusion).",
        "",
        "Gain from BlurDM (dB PSNR; per-tile prior / one prior per image):",
        "",
    ]
    for backbone, pair in results.items():
        gains = ", ".join(
            f"{s} {pair['blurdm'][s]['psnr'] - pair['baseline'][s]['psnr']:+.2f} / "
            f"{pair['blurdm-image-prior'][s]['psnr'] - pair['baseline'][s]['psnr']:+.2f}"
            for s in sets
        )
        lines.append(f"- {backbone}: {gains}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"identity": identity, "results": results}, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="nafnet,mimo-unet-plus")
    ap.add_argument("--runs", default="runs/blurdm-experiment")
    ap.add_argument("--out", default=str(ROOT / "docs" / "blurdm"))
    ap.add_argument("--bench", default="../shared/bench/val_uniform")
    ap.add_argument("--val", default="../shared/photos/val")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=None, help="measure on the first N pairs of each set only (a quick check)")
    ap.add_argument("--set", action="append", default=[], help="override for both runs' configs, e.g. train.device=cpu")
    args = ap.parse_args()
    runs, results, configs = Path(args.runs), {}, {}
    for backbone in args.backbones.split(","):
        cfg = load_config(ROOT / "src" / "unblur" / "configs" / "blurdm" / f"{backbone}.yaml", args.set)
        base = baseline_config(cfg)
        print(f"== {backbone}: backbone alone, {base['optim']['steps']} steps", flush=True)
        train(base, runs / backbone / "baseline", resume="auto")
        print(f"== {backbone}: + BlurDM, stages of {[s['optim']['steps'] for s in cfg['stages']]} steps", flush=True)
        train_stages(cfg, runs / backbone / "blurdm", resume="auto")
        configs[backbone] = {
            "baseline": base["optim"]["steps"],
            "blurdm": "+".join(str(s["optim"]["steps"]) for s in cfg["stages"]),
        }
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
        results[backbone] = {
            kind: measure(runs / backbone / kind / "last.safetensors", sets, args.device) for kind in ("baseline", "blurdm")
        }
        # photos larger than a tile (512 px): BlurDM's prior per tile (above) or once per image
        results[backbone]["blurdm-image-prior"] = measure(
            runs / backbone / "blurdm" / "last.safetensors", sets, args.device, "image"
        )
        print(backbone, json.dumps(results[backbone]), flush=True)
    report(results, identity, configs, Path(args.out))
    print(f"wrote {args.out}/README.md")

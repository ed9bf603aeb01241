"""Write docs/backbones.md: every backbone's parameters and MACs at 256x256 (ours and the paper's)
and its CPU inference speed, for the published size and our tiny test size.

MACs are counted by PyTorch's FlopCounterMode (matrix products and convolutions, FFTs not
counted; MACs = FLOPs / 2), with a 256x256 input and no prior. Speed: the best of --repeats
forward passes on a --size x --size image after one warm-up, in seconds per megapixel, with
the threads torch uses by default on this machine.

    python scripts/backbone_table.py [--size 512] [--repeats 2] [--out docs/backbones.md]
"""

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from unblur import nn as backbones

ROOT = Path(__file__).resolve().parents[1]


def measure(arch: str, config: dict, size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    net = backbones.build(arch, config).eval()
    params, gmacs = backbones.cost(net)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        net(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    return {"params_m": params, "gmacs": gmacs, "s_per_mp": min(times) / (size * size / 1e6)}


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "backbones.md"))
    args = ap.parse_args()
    lines = [
        "# Backbones",
        "",
        "Made by `python scripts/backbone_table.py`. Every backbone is written by us from its paper and takes",
        "BlurDM's prior (channel modulation of its decoder blocks, `prior_dim > 0`; not counted below).",
        "MACs at 256x256 counted with PyTorch's `FlopCounterMode` (convolutions and matrix products; FFTs,",
        "normalisation and element-wise operations are not counted, which papers' counters partly do).",
        (
            f"CPU speed: best of {args.repeats} forward passes on {args.size}x{args.size} after a warm-up, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)."
        ),
        "",
        "| backbone | size | params (M) | paper params (M) | GMACs @256² | paper GMACs @256² | CPU s/MP | paper figures from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arch in backbones.BACKBONES:
        module = backbones.backbone_module(arch)
        for label, config in (("published", module.PUBLISHED), ("tiny", module.TINY)):
            m = measure(arch, config, args.size, args.repeats)
            paper = module.PAPER if label == "published" else {}
            lines.append(
                f"| {arch} | {label} | {m['params_m']:.2f} | {fmt(paper.get('params_m'), '.2f') if paper else ''} "
                f"| {m['gmacs']:.2f} | {fmt(paper.get('gmacs'), '.2f') if paper else ''} | {m['s_per_mp']:.2f} "
                f"| {paper.get('source', '')} |"
            )
            print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")

"""How fast the bundled regression models run here, and how close that is to the machine's compute floor.

For each model x precision (and ONNX Runtime, when installed and the model exports): seconds per
megapixel for the whole `unblur deblur` process (start, read, restore, write) and for the network
alone, on a 1-MP and a 12-MP photo; peak resident memory of the process; the PSNR of the output
against the fp32 result of the same weights. The floor: this machine's fp32 3x3 convolution
(64 -> 64 channels) over one megapixel, in GMAC/s, and each model's GMAC per megapixel.

    python scripts/speed.py [--models nafnet-small,...] [--out docs/benchmarks/speed.md]
    python scripts/speed.py --compare REF   # also: whole process on a 4-MP photo, this tree vs git REF, alternated

Run it on an otherwise idle machine: every figure is a wall-clock time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from unblur.io import read_image, write_image
from unblur.metrics import psnr
from unblur.nn import cost
from unblur.restore import Restorer

ROOT = Path(__file__).resolve().parent.parent
CONV_GMAC = 64 * 64 * 9 * 1e6 / 1e9  # one 3x3 convolution, 64 -> 64 channels, over 1 megapixel


def photo(megapixels: float, path: Path) -> Path:
    """A photo-like test image of about ``megapixels`` (a bundled sample, resized; 4:3)."""
    from PIL import Image

    from unblur.demo import SAMPLES

    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5 / 16)) * 16
    h = int(round(w * 3 / 4 / 16)) * 16
    img = Image.open(SAMPLES / "coffee-blurred.png").convert("RGB").resize((w, h), Image.BICUBIC)
    img.save(path, compress_level=1)
    return path


def conv_floor(repeats: int = 5) -> float:
    """GMAC/s of one fp32 3x3 convolution, 64 -> 64 channels, over a 1000 x 1000 image (PyTorch, this machine)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.rand(1, 64, 1000, 1000)
    with torch.no_grad():
        conv(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - t0)
    return CONV_GMAC / min(times)


def whole_process(args: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak resident MiB) of one command, its children included."""
    t0 = time.perf_counter()
    proc = psutil.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.read().decode()[-400:]}")
    return seconds, peak / 2**20


def deblur_command(image: Path, out: Path, model: str, precision: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "unblur", "deblur", str(image), "-o", str(out), "--model", model, "--overwrite", "-q",
            "--precision", precision]


def network_seconds(restorer: Restorer, rgb: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` time of ``restore`` (after one warm-up on a crop) and its output."""
    restorer.restore(rgb[:256, :256])
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = restorer.restore(rgb)
        times.append(time.perf_counter() - t0)
    return min(times), out


def measure(models: list[str], precisions: list[str], sizes: list[float], work: Path, repeats: int) -> list[dict]:
    rows = []
    images = {mp: photo(mp, work / f"photo-{mp:g}mp.png") for mp in sizes}
    for model in models:
        params, gmacs = cost(Restorer(model, device="cpu", precision="fp32").model)
        gmac_per_mp = gmacs * 1e6 / 256**2
        reference = {}
        for precision in precisions:
            restorer = Restorer(model, device="cpu", precision=precision)
            for mp, path in images.items():
                rgb, info = read_image(path)
                megapixels = rgb.shape[0] * rgb.shape[1] / 1e6
                net, out = network_seconds(restorer, rgb, repeats if mp <= 2 else 1)
                if precision == "fp32":
                    reference[mp] = out
                quality = psnr(out, reference[mp]) if mp in reference and precision != "fp32" else None
                proc, peak = whole_process(deblur_command(path, work / "out", model, precision))
                rows.append({
                    "model": model, "precision": precision, "runtime": "torch", "megapixels": megapixels,
                    "process_s_per_mp": proc / megapixels, "network_s_per_mp": net / megapixels,
                    "peak_mib": peak, "gmac_per_mp": gmac_per_mp, "params_m": params, "psnr_vs_fp32": quality,
                })
                print(rows[-1], flush=True)
    return rows


def compare(ref: str, work: Path, rounds: int) -> dict:
    """Whole process on a 4-MP photo with each tree's default model: this tree against git ``ref``
    checked out beside it (same Python environment), alternated."""
    base = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), ref], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        image = photo(4, work / "photo-4mp.png")
        env_base = {**os.environ, "PYTHONPATH": str(base / "src")}
        env_ours = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        # each tree's own default model and settings: what a user gets from `unblur deblur photo -o out`
        ours_cmd = [sys.executable, "-m", "unblur", "deblur", str(image), "-o", str(work / "ours"), "-q", "--overwrite"]
        base_cmd = [sys.executable, "-m", "unblur", "deblur", str(image), "-o", str(work / "base"), "-q", "--overwrite"]
        ours, theirs = [], []
        for _ in range(rounds):
            theirs.append(whole_process(base_cmd, env_base))
            ours.append(whole_process(ours_cmd, env_ours))
        a, _ = read_image(work / "ours" / image.name)
        b, _ = read_image(work / "base" / image.name)
        megapixels = a.shape[0] * a.shape[1] / 1e6
        return {
            "ref": ref, "megapixels": megapixels,
            "ours_s": statistics.median(t for t, _ in ours), "base_s": statistics.median(t for t, _ in theirs),
            "ours_peak_mib": max(m for _, m in ours), "base_peak_mib": max(m for _, m in theirs),
            "psnr_ours_vs_base": psnr(a, b), "rounds": rounds,
        }
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)


def report(rows: list[dict], floor: float, comparison: dict | None, command: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    lines = [
        "# Speed of the bundled regression models",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d')}: {os.cpu_count()} cores ({cpu}), "
        f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, an otherwise idle machine.",
        "",
        f"**Compute floor.** One fp32 3x3 convolution, 64 -> 64 channels, over 1 megapixel runs at **{floor:.0f} GMAC/s** "
        f"here ({CONV_GMAC / floor:.3f} s). A model's floor is its GMAC per megapixel at that rate; "
        "\"x floor\" is the network's time over that floor (1.0 would be a network as efficient as one big convolution).",
        "",
        "| model | precision | photo | whole process s/MP | network s/MP | peak memory | GMAC/MP | x floor | PSNR vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor_s = r["gmac_per_mp"] / floor
        q = f"{r['psnr_vs_fp32']:.1f} dB" if r["psnr_vs_fp32"] is not None else "(reference)"
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['megapixels']:.1f} MP | {r['process_s_per_mp']:.2f} | "
            f"{r['network_s_per_mp']:.2f} | {r['peak_mib']:.0f} MiB | {r['gmac_per_mp']:.0f} | "
            f"{r['network_s_per_mp'] / floor_s:.1f} | {q} |"
        )
    conv_s = CONV_GMAC / floor
    lines += ["", "**The goal we track**: per megapixel, the default model within 2.5x the time of that one convolution."]
    for r in rows:
        if r["precision"] == "auto" and r["megapixels"] < 2:
            lines.append(f"- {r['model']} ({r['megapixels']:.1f} MP, auto): network {r['network_s_per_mp']:.2f} s/MP = "
                         f"{r['network_s_per_mp'] / conv_s:.1f}x the convolution; whole process {r['process_s_per_mp'] / conv_s:.1f}x.")
    if comparison:
        c = comparison
        lines += [
            "",
            f"**Side by side** (whole `unblur deblur` process, each tree's default model, a {c['megapixels']:.1f}-MP photo, "
            f"median of {c['rounds']} alternated runs): git `{c['ref']}` {c['base_s']:.1f} s "
            f"({c['base_s'] / c['megapixels']:.2f} s/MP, peak {c['base_peak_mib']:.0f} MiB) -> this tree {c['ours_s']:.1f} s "
            f"({c['ours_s'] / c['megapixels']:.2f} s/MP, peak {c['ours_peak_mib']:.0f} MiB): **{c['base_s'] / c['ours_s']:.2f}x faster**; "
            f"outputs {c['psnr_ours_vs_base']:.1f} dB PSNR apart.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="nafnet-small")
    p.add_argument("--precisions", default="fp32,auto")
    p.add_argument("--sizes", default="1,12", help="photo sizes in megapixels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compare", default=None, metavar="REF", help="git ref to compare the default model with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None, metavar="MD")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        floor = conv_floor()
        print(f"3x3 conv floor: {floor:.0f} GMAC/s", flush=True)
        comparison = compare(args.compare, work, args.rounds) if args.compare else None
        if comparison:
            print(comparison, flush=True)
        rows = measure(args.models.split(","), args.precisions.split(","), [float(s) for s in args.sizes.split(",")], work,
                       args.repeats)
    text = report(rows, floor, comparison, "python scripts/speed.py " + " ".join(sys.argv[1:]))
    print(text)
    if args.out:
        from unblur.atomic import atomic_write

        with atomic_write(args.out) as tmp:
            Path(tmp).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run one model over a paired set, image by image, keeping every result on disk.

Results live in ``OUT/cache/<model>/<name>.{png,json}``: a finished image is never
recomputed, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from tqdm import tqdm

from unblur.atomic import atomic_write
from unblur.data.paired import Pair
from unblur.io import read_image, write_image
from unblur.metrics import psnr, ssim
from unblur.metrics.lpips import LPIPSUnavailable, load_lpips, lpips
from unblur.metrics.niqe import niqe

SSIM_VARIANT = "basicsr"


class PeakMemory:
    """Samples this process's resident memory in a thread; ``peak`` in bytes."""

    def __init__(self, every: float = 0.02):
        self.proc, self.every, self.peak = psutil.Process(), every, 0
        self._stop = threading.Event()

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def cache_dir(out: str | Path, model: str) -> Path:
    """Where a model's per-image outputs and rows live in a report folder. A model given as a file in
    another folder (``runs/x/last.safetensors``) gets its stem and a digest of its absolute path: a path
    cannot be joined below the folder (an absolute one would replace it), and two files of one name stay apart."""
    if Path(model).name != model:
        digest = hashlib.sha1(str(Path(model).resolve()).encode()).hexdigest()[:8]
        model = f"{Path(model).stem}-{digest}"
    return Path(out) / "cache" / model


def run_model(
    model: str,
    pairs: list[Pair],
    out: Path,
    device: str = "auto",
    tile: int | None = None,
    quiet: bool = False,
    precision: str = "auto",
) -> list[dict]:
    """Rows ``{name, psnr, ssim, niqe, lpips, seconds, megapixels, peak_rss_mib}`` for every pair, computing only the missing ones."""
    from unblur.restore import make_restorer

    cache = cache_dir(out, model)
    cache.mkdir(parents=True, exist_ok=True)
    restorer, rows = None, []
    perceptual, _ = lpips_model()
    for pair in tqdm(pairs, desc=model, unit="img", disable=quiet):
        done = cache / f"{pair.name}.json"
        if done.exists():
            rows.append(json.loads(done.read_text()))
            continue
        if restorer is None:
            restorer = make_restorer(model, device=device, tile=tile, precision=precision)
        blurred, info = read_image(pair.blurred)
        sharp, _ = read_image(pair.sharp)
        kernel = pair.load_kernel()
        if restorer.needs_kernel and kernel is None:
            raise ValueError(f"{model} needs the true kernel, and {pair.name} has none")
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            restored = restorer.restore(blurred, kernel)
            seconds = time.perf_counter() - t0
        write_image(cache / f"{pair.name}.png", restored, info, overwrite=True)
        row = {
            "name": pair.name,
            "psnr": psnr(restored, sharp),
            "ssim": ssim(restored, sharp, SSIM_VARIANT),
            "niqe": niqe(restored) if min(restored.shape[:2]) >= 96 else None,
            "lpips": lpips(perceptual, restored, sharp) if perceptual is not None else None,
            "seconds": seconds,
            "megapixels": blurred.shape[0] * blurred.shape[1] / 1e6,
            "peak_rss_mib": mem.peak / 2**20,
        }
        with atomic_write(done) as tmp:  # the JSON marks the image as finished, so it is written last
            Path(tmp).write_text(json.dumps(row))
        rows.append(row)
    return rows


def _mean(values: list) -> float | None:
    """Mean of the values that were computed; None if none was."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def lpips_model():
    """``(model, None)`` when local LPIPS weights exist, else ``(None, reason)``."""
    try:
        return load_lpips(), None
    except LPIPSUnavailable as err:
        return None, str(err)


def summarise(rows: list[dict], base: list[dict] | None = None) -> dict:
    """Means over a model's rows; with ``base`` (the identity rows) also the gain and how many images improved."""
    s = {
        "psnr": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "niqe": _mean([r.get("niqe") for r in rows]),
        "lpips": _mean([r.get("lpips") for r in rows]),
        "seconds_per_megapixel": sum(r["seconds"] for r in rows) / sum(r["megapixels"] for r in rows),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
        "images": len(rows),
    }
    if base is not None:
        gains = [r["psnr"] - b["psnr"] for r, b in zip(rows, base)]
        s["gain"] = float(np.mean(gains))
        s["improved"] = sum(g > 0 for g in gains)
    return s

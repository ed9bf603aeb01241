"""PyTorch against ONNX Runtime on the same model and photo, side by side: is ORT worth a runtime option?

Variants (tiled as `unblur deblur` tiles on a CPU, tiles of at most 448 px overlapping by 32, unless "whole"):
- torch fp32: :class:`unblur.restore.Restorer` with ``precision="fp32"`` (channels-last weights);
- torch auto: the Restorer's default (bf16 weights + channels-last on CPUs with native bf16, else fp32);
- ort fp32: the graph `unblur export` writes, in ONNX Runtime's CPU provider (all graph optimisations),
  with its worker threads spinning while they wait (ORT's default) and without (better on a shared CPU),
  tiled and on the whole photo at once;
- ort int8: that graph statically quantised (QDQ, int8 weights per channel, uint8 activations calibrated on
  crops of the other bundled photos); worth having only if its output stays within 50 dB PSNR of fp32.
ONNX Runtime's CPU provider has no bf16 convolutions (its bf16 fast-math switch is for ARM), so there is no
ORT bf16 row. Rounds alternate the variants; the table gives each one's best and median seconds per photo,
and its PSNR against torch fp32 with the same tiling (whole: computed once, untimed).

    python scripts/onnx_speed.py [--model nafnet-small] [--megapixels 1] [--threads 2] [--rounds 5]

Run it on an otherwise idle machine; it prints the load average it saw before and after.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unblur.export import INPUT, OUTPUT, export_onnx, onnx_session
from unblur.io import read_image
from unblur.metrics import psnr
from unblur.restore import Restorer, image_tensor, tensor_image
from unblur.tiling import run_tiled

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import photo  # noqa: E402  (the same 4:3 test photo as scripts/speed.py)

TILE, OVERLAP = 448, 32


class OrtRunner:
    """An exported graph in ONNX Runtime with the Restorer's tiling (``tile`` 0: the whole photo at once):
    ``restore(rgb)`` -> rgb."""

    def __init__(self, path: Path, threads: int, tile: int = TILE, spin: bool = True):
        self.session, self.tile = onnx_session(path, threads, spin), tile

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x.numpy()})[0])

    def restore(self, rgb: np.ndarray) -> np.ndarray:
        x = image_tensor(rgb)
        return tensor_image(run_tiled(self._run, x, self.tile, OVERLAP) if self.tile else self._run(x))


def quantise(graph: Path, out: Path, calibration: list[np.ndarray]) -> Path:
    """Static int8 QDQ quantisation of ``graph`` calibrated on ``calibration`` images (H, W, 3)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{INPUT: image_tensor(rgb).numpy()} for rgb in calibration])

        def get_next(self):
            return next(self.items, None)

    prepared = out.with_suffix(".pre.onnx")
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # a warning per 1-D weight that per-channel quantisation skips
    try:
        quant_pre_process(str(graph), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    finally:
        logging.getLogger().setLevel(quiet)
    return out


def timed(fn, rgb: np.ndarray) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    out = fn(rgb)
    return time.perf_counter() - t0, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="nafnet-small")
    p.add_argument("--megapixels", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rgb, _ = read_image(photo(args.megapixels, work / "photo.png"))
        from unblur.demo import SAMPLES

        calibration = [read_image(path)[0][:256, :256] for path in sorted(SAMPLES.glob("*-blurred.png")) if "coffee" not in path.name]
        graph = work / "model.onnx"
        export_onnx(args.model, graph)
        int8 = quantise(graph, work / "model-int8.onnx", calibration)
        # (runtime, precision, tiles, threads spin) -> restore
        runners = {
            ("torch", "fp32", "tiled", "-"): Restorer(args.model, device="cpu", tile=TILE, overlap=OVERLAP, precision="fp32").restore,
            ("torch", "auto", "tiled", "-"): Restorer(args.model, device="cpu", tile=TILE, overlap=OVERLAP, precision="auto").restore,
            ("ort", "fp32", "tiled", "yes"): OrtRunner(graph, args.threads).restore,
            ("ort", "fp32", "tiled", "no"): OrtRunner(graph, args.threads, spin=False).restore,
            ("ort", "fp32", "whole", "no"): OrtRunner(graph, args.threads, tile=0, spin=False).restore,
            ("ort", "int8", "tiled", "no"): OrtRunner(int8, args.threads, spin=False).restore,
        }
        whole = Restorer(args.model, device="cpu", tile=0, precision="fp32").restore(rgb)  # reference for "whole"
        auto = Restorer(args.model, device="cpu", precision="auto").dtype
        for fn in runners.values():  # warm-up: first-call allocations and kernel choices
            fn(rgb[:TILE, :TILE])
        times: dict[tuple, list[float]] = {name: [] for name in runners}
        outputs = {}
        for r in range(args.rounds):
            for name, fn in runners.items():
                seconds, outputs[name] = timed(fn, rgb)
                times[name].append(seconds)
            print(f"round {r + 1}: " + ", ".join(f"{' '.join(n)} {t[-1]:.2f} s" for n, t in times.items()), flush=True)
    load_after = os.getloadavg()
    megapixels = rgb.shape[0] * rgb.shape[1] / 1e6
    reference = {"tiled": outputs[("torch", "fp32", "tiled", "-")], "whole": whole}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    import onnxruntime

    lines = [
        f"`python scripts/onnx_speed.py {' '.join(sys.argv[1:])}`: {args.model}, a {rgb.shape[1]}x{rgb.shape[0]} photo "
        f"({megapixels:.2f} MP), {args.threads} threads, {args.rounds} alternated rounds; {os.cpu_count()} cores ({cpu}), "
        f"PyTorch {torch.__version__} (auto = {str(auto).replace('torch.', '')}), ONNX Runtime {onnxruntime.__version__}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.",
        "",
        "| runtime | precision | tiles | threads spin | best s | median s | best s/MP | vs torch auto | PSNR vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    best_auto = min(times[("torch", "auto", "tiled", "-")])
    for name, ts in times.items():
        runtime, precision, tiling, spin = name
        quality = "(reference)" if name[:3] == ("torch", "fp32", "tiled") else f"{psnr(outputs[name], reference[tiling]):.1f} dB"
        lines.append(
            f"| {runtime} | {precision} | {tiling} | {spin} | {min(ts):.2f} | {statistics.median(ts):.2f} | {min(ts) / megapixels:.2f} | "
            f"{best_auto / min(ts):.2f}x | {quality} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

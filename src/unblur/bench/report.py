"""The benchmark report: a Markdown table, side-by-side crops and two plots (drawn with Pillow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unblur.atomic import atomic_write
from unblur.bench.runner import SSIM_VARIANT, cache_dir
from unblur.data.synthetic import centre_crop
from unblur.demo import comparison
from unblur.io import read_image, write_image

COLOURS = [(120, 120, 120), (220, 120, 40), (60, 140, 220), (40, 170, 90), (170, 60, 170), (200, 60, 60)]


def crops(out: Path, pairs, models: list[str], rows: dict, which: str, index: int) -> str:
    """Blurred | each model | sharp, centre crops of one image; returns the file name written."""
    pair = pairs[index]
    tiles = []
    for model in models:
        img = read_image(cache_dir(out, model) / f"{pair.name}.png")[0]
        label = "blurred" if model == "identity" else model
        tiles.append((centre_crop(img, 256), f"{label} {rows[model][index]['psnr']:.2f} dB"))
    tiles.append((centre_crop(read_image(pair.sharp)[0], 256), "sharp"))
    name = f"crops-{which}.png"
    write_image(out / name, comparison([tiles], height=256), overwrite=True)
    return name


def _axes(draw: ImageDraw.ImageDraw, box, xlabel: str, ylabel: str, yticks, ymap) -> None:
    x0, y0, x1, y1 = box
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=(0, 0, 0))
    for v in yticks:
        y = ymap(v)
        draw.line([(x0 - 4, y), (x0, y)], fill=(0, 0, 0))
        draw.text((x0 - 38, y - 6), f"{v:g}", fill=(0, 0, 0))
    draw.text(((x0 + x1) // 2 - 3 * len(xlabel), y1 + 22), xlabel, fill=(0, 0, 0))
    draw.text((4, y0 - 16), ylabel, fill=(0, 0, 0))


class _Frame:
    """A white 420-px-high canvas with a plot box (60 px left margin) mapping data (x, y) ranges to pixels."""

    def __init__(self, width: int, x_range: tuple[float, float], y_range: tuple[float, float]):
        self.img = Image.new("RGB", (width, 420), "white")
        self.draw = ImageDraw.Draw(self.img)
        self.box = (60, 30, width - 20, 370)
        self.x_range, self.y_range = x_range, y_range

    def x(self, v):
        (lo, hi), b = self.x_range, self.box
        return b[0] + (v - lo) / (hi - lo) * (b[2] - b[0])

    def y(self, v):
        (lo, hi), b = self.y_range, self.box
        return b[3] - (v - lo) / (hi - lo) * (b[3] - b[1])

    def axes(self, xlabel: str, ylabel: str, yticks) -> None:
        _axes(self.draw, self.box, xlabel, ylabel, yticks, self.y)

    def save(self, path: Path) -> None:
        with atomic_write(path, suffix=".png") as tmp:
            self.img.save(tmp)


def plot_gains(path: Path, models: list[str], rows: dict) -> None:
    """PSNR gain over the blurred input per image (images sorted by the last model's gain), one colour per model."""
    shown = [m for m in models if m != "identity"]
    base = [r["psnr"] for r in rows["identity"]]
    gains = {m: np.array([r["psnr"] for r in rows[m]]) - base for m in shown}
    order = np.argsort(gains[shown[-1]])
    lo, hi = min(-1.0, min(g.min() for g in gains.values())), max(1.0, max(g.max() for g in gains.values()))
    f = _Frame(900, (0.0, len(order)), (lo, hi))  # x: the image's rank
    d, box = f.draw, f.box
    f.axes("images, sorted by gain of " + shown[-1], "PSNR gain (dB)", np.arange(np.floor(lo), np.ceil(hi) + 1, 1))
    d.line([(box[0], f.y(0)), (box[2], f.y(0))], fill=(180, 180, 180))
    for k, m in enumerate(shown):
        colour = COLOURS[(k + 1) % len(COLOURS)]
        for i, j in enumerate(order):
            x, y = f.x(i + 0.5), f.y(gains[m][j])
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        d.text((box[0] + 20 + 170 * k, box[1] + 4), f"o {m}", fill=colour)
    f.save(path)


def plot_speed_quality(path: Path, summary: dict) -> None:
    """Mean PSNR against seconds per megapixel (log scale), one point per model."""
    items = [(m, s) for m, s in summary.items() if m != "identity"]
    xs = np.log10([max(s["seconds_per_megapixel"], 1e-3) for _, s in items])
    ys = [s["psnr"] for _, s in items]
    x_lo, x_hi = np.floor(xs.min()) - 0.2, np.ceil(xs.max()) + 0.2
    y_lo, y_hi = np.floor(min(ys + [summary["identity"]["psnr"]])) - 0.5, np.ceil(max(ys)) + 0.5
    f = _Frame(700, (x_lo, x_hi), (y_lo, y_hi))
    d, box = f.draw, f.box
    f.axes("seconds per megapixel (log scale)", "mean PSNR (dB)", np.arange(y_lo, y_hi + 0.01, 1))
    for e in range(int(np.ceil(x_lo)), int(np.floor(x_hi)) + 1):
        d.text((f.x(e) - 12, box[3] + 6), f"{10.0**e:g}", fill=(0, 0, 0))
    yb = f.y(summary["identity"]["psnr"])
    d.line([(box[0], yb), (box[2], yb)], fill=(180, 180, 180))
    d.text((box[0] + 6, yb - 14), "blurred input", fill=(120, 120, 120))
    for k, ((m, _), x, y) in enumerate(zip(items, xs, ys)):
        colour = COLOURS[(k + 1) % len(COLOURS)]
        d.ellipse([f.x(x) - 5, f.y(y) - 5, f.x(x) + 5, f.y(y) + 5], fill=colour)
        d.text((f.x(x) + 8, f.y(y) - 6), m, fill=colour)
    f.save(path)


def plot_curves(path: Path, curves: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str) -> None:
    """Learning curves: one polyline of (x, y) points per name, linear axes, y ticks every 0.1 or 1 unit."""
    points = [p for c in curves.values() for p in c]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    tick = 0.1 if max(ys) - min(ys) < 2 else 1.0
    y_lo, y_hi = np.floor(min(ys) / tick) * tick - tick, np.ceil(max(ys) / tick) * tick + tick
    f = _Frame(800, (0.0, max(xs) * 1.02), (y_lo, y_hi))
    d, box = f.draw, f.box
    f.axes(xlabel, ylabel, np.round(np.arange(y_lo, y_hi + tick / 2, tick), 2))
    for v in np.linspace(0.0, max(xs), 5):
        d.text((f.x(v) - 12, box[3] + 6), f"{v:.0f}", fill=(0, 0, 0))
    for k, (name, curve) in enumerate(curves.items()):
        colour = COLOURS[(k + 1) % len(COLOURS)]
        line = [(f.x(x), f.y(y)) for x, y in curve]
        d.line(line, fill=colour, width=2)
        for x, y in line:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        d.text((box[0] + 20 + 220 * k, box[1] + 4), f"o {name}", fill=colour)
    f.save(path)


def passthrough_table(passthrough: dict) -> list[str]:
    """Markdown lines: how unchanged each model returns sharp photos (PSNR of its output against the photo)."""
    lines = [
        "## Sharp photos returned (pass-through)",
        "",
        f"Each model run on {len(next(iter(passthrough.values())))} sharp photos; PSNR of the output against the photo "
        "itself (higher is better: a sharp photo should come back unchanged).",
        "",
        "| model | mean PSNR (dB) | worst (dB) | photos below 36 dB |",
        "|---|---|---|---|",
    ]
    for m, prow in passthrough.items():
        values = [r["psnr"] for r in prow]
        lines.append(f"| {m} | {np.mean(values):.2f} | {min(values):.2f} | {sum(v < 36 for v in values)} / {len(values)} |")
    return lines + [""]


def write_report(
    out: Path, data: Path, pairs, models: list[str], rows: dict, command: str, passthrough: dict | None = None
) -> Path:
    """Write ``report.md``, ``results.json``, the crops and the plots into ``out``; ``passthrough``: each
    model's rows on sharp photos (:func:`passthrough_table`)."""
    from unblur.bench.runner import lpips_model, summarise

    _, reason = lpips_model()
    lpips_note = "computed from the local weight files" if reason is None else f"n/a ({reason})"
    base = rows["identity"]
    summary = {m: summarise(rows[m], base) for m in models}
    focus = [m for m in models if m != "identity"][-1]
    gains = np.array([r["psnr"] for r in rows[focus]]) - [r["psnr"] for r in base]
    most = crops(out, pairs, models, rows, "most-improved", int(np.argmax(gains)))
    least = crops(out, pairs, models, rows, "least-improved", int(np.argmin(gains)))
    plot_gains(out / "gain-per-image.png", models, rows)
    plot_speed_quality(out / "speed-vs-quality.png", summary)
    lines = [
        f"# Benchmark: {data.name}",
        "",
        f"{len(pairs)} pairs from `{data.as_posix()}`. Made by `{command}`.",
        "",
        f"PSNR: RGB, 8-bit, no border crop (MATLAB `psnr`). SSIM: variant `{SSIM_VARIANT}` (11x11 Gaussian σ=1.5, valid "
        "windows only, per channel, = scikit-image `structural_similarity(gaussian_weights=True, sigma=1.5, "
        "use_sample_covariance=False)`). NIQE (lower is better): our offline re-implementation with a pristine model fitted "
        "to scikit-image's photos (`scripts/fit_niqe.py`): it ranks like NIQE, its absolute values are not comparable with "
        f"the MATLAB code's. LPIPS (AlexNet, lower is better): {lpips_note}. Speed: wall-clock seconds per megapixel on this machine's CPU, whole image; peak "
        "memory: the process's resident set while the model ran (includes the interpreter and everything loaded).",
        "",
        "| model | PSNR (dB) | SSIM | LPIPS | NIQE | gain over blurred (dB) | images improved | s / MP | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        s = summary[m]
        gain = "—" if m == "identity" else f"{s['gain']:+.2f}"
        improved = "—" if m == "identity" else f"{s['improved']} / {s['images']}"
        name = "identity (blurred input)" if m == "identity" else m
        niqe = "n/a" if s["niqe"] is None else f"{s['niqe']:.2f}"
        lp = "n/a" if s["lpips"] is None else f"{s['lpips']:.4f}"
        speed = f"{s['seconds_per_megapixel']:.2f}"
        row = [name, f"{s['psnr']:.2f}", f"{s['ssim']:.4f}", lp, niqe, gain, improved, speed, f"{s['peak_rss_mib']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Models whose name ends in `-oracle` are given each image's true kernel: they show what knowing the blur buys, "
        "not what a blind method reaches.",
        "",
        *(passthrough_table(passthrough) if passthrough else []),
        "## Gain per image\n\n![gain per image](gain-per-image.png)\n\n## Speed and quality\n\n![speed vs quality](speed-vs-quality.png)",
        "",
        f"## Most improved by {focus}: `{pairs[int(np.argmax(gains))].name}` ({gains.max():+.2f} dB)\n\n![most improved]({most})",
        "",
        f"## Least improved by {focus}: `{pairs[int(np.argmin(gains))].name}` ({gains.min():+.2f} dB)\n\n![least improved]({least})",
        "",
        "## Per image (PSNR, dB)",
        "",
        "| image | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for i, pair in enumerate(pairs):
        lines.append(f"| {pair.name} | " + " | ".join(f"{rows[m][i]['psnr']:.2f}" for m in models) + " |")
    with atomic_write(out / "report.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    with atomic_write(out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps({"summary": summary, "rows": rows, "passthrough": passthrough}, indent=1))
    return out / "report.md"

"""`unblur demo`: deblur the bundled samples and show blurred / deblurred / sharp side by side."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unblur.io import ImageError, read_image, write_image
from unblur.metrics import psnr
from unblur.zoo import DEFAULT

SAMPLES = Path(__file__).parent / "assets" / "samples"


def sample_names() -> list[str]:
    return sorted(p.name[: -len("-blurred.png")] for p in SAMPLES.glob("*-blurred.png"))


def _labelled(rgb: np.ndarray, text: str, height: int) -> Image.Image:
    img = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    img = img.resize((round(img.width * height / img.height), height), Image.LANCZOS)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 8 + 7 * len(text), 18], fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255))
    return img


def comparison(rows: list[list[tuple[np.ndarray, str]]], height: int = 300, gap: int = 4) -> np.ndarray:
    """Tile labelled images into a grid (one list per row); returns float RGB (H, W, 3)."""
    tiles = [[_labelled(rgb, text, height) for rgb, text in row] for row in rows]
    width = max(sum(t.width for t in row) + gap * (len(row) - 1) for row in tiles)
    canvas = Image.new("RGB", (width, len(tiles) * (height + gap) - gap), (255, 255, 255))
    for r, row in enumerate(tiles):
        x = 0
        for t in row:
            canvas.paste(t, (x, r * (height + gap)))
            x += t.width + gap
    return np.asarray(canvas, dtype=np.float32) / 255.0


def run_demo(out: Path, model=None, device: str = "auto", overwrite: bool = False) -> int:
    from unblur.cli import UsageError
    from unblur.restore import Restorer

    names = sample_names()
    targets = [out / f"{n}.png" for n in names] + [out / "comparison.png"]
    clash = [str(t) for t in targets if t.exists()]
    if clash and not overwrite:
        raise UsageError(f"{clash[0]} exists (use --overwrite to replace the demo outputs)")
    restorer = Restorer(model, device=device)
    rows, gains = [], []
    for name in names:
        try:
            blurred, info = read_image(SAMPLES / f"{name}-blurred.png")
            sharp, _ = read_image(SAMPLES / f"{name}-sharp.png")
        except ImageError as err:
            raise UsageError(f"bundled sample damaged: {err}") from None
        t0 = time.time()
        restored = restorer.restore(blurred)
        seconds = time.time() - t0
        write_image(out / f"{name}.png", restored, info, overwrite=overwrite)
        before, after = psnr(blurred, sharp), psnr(restored, sharp)
        gains.append(after - before)
        print(
            f"{name:10s} {blurred.shape[1]}x{blurred.shape[0]}  PSNR blurred {before:5.2f} dB -> deblurred {after:5.2f} dB "
            f"({after - before:+.2f})  {seconds:.1f} s"
        )
        rows.append([(blurred, f"blurred {before:.2f} dB"), (restored, f"deblurred {after:.2f} dB"), (sharp, "sharp")])
    write_image(out / "comparison.png", comparison(rows), overwrite=overwrite)
    print(
        f"mean gain {np.mean(gains):+.2f} dB with model {model or DEFAULT + ' (the default)'} "
        f"({restorer.meta.get('arch')}); results and comparison.png in {out}"
    )
    return 0

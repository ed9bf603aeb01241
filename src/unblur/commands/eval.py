"""`unblur eval`: score a folder of results against a folder of ground truths, by file name."""

from __future__ import annotations

import json
from pathlib import Path

from unblur.cli import UsageError


def add_parser(sub) -> None:
    e = sub.add_parser(
        "eval",
        help="score results against ground truth (PSNR, SSIM) per protocol",
        description="Score PRED/NAME.* against GT/NAME.* (matched by file stem).",
    )
    e.add_argument("--pred", required=True, metavar="DIR")
    e.add_argument("--gt", required=True, metavar="DIR")
    e.add_argument(
        "--protocol",
        default="gopro",
        choices=["gopro", "realblur"],
        help="gopro: RGB 8-bit, no crop (also HIDE); realblur: intensity scaling + ECC alignment + masked scores",
    )
    e.add_argument("--ssim", default="basicsr", choices=["basicsr", "matlab"], help="SSIM variant (gopro protocol)")
    e.add_argument("--json", default=None, metavar="FILE", help="also write every row and the means as JSON")
    e.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from unblur.atomic import atomic_write
    from unblur.io import ImageError, list_images, read_image
    from unblur.metrics import psnr, ssim
    from unblur.metrics.realblur import realblur_psnr_ssim

    gts = {p.stem: p for p in list_images([args.gt])} if Path(args.gt).is_dir() else {}
    preds = list_images([args.pred]) if Path(args.pred).is_dir() else []
    if not preds or not gts:
        raise UsageError(f"no images in {args.pred if not preds else args.gt}")
    missing = [p.name for p in preds if p.stem not in gts]
    if missing:
        raise UsageError(f"no ground truth for {len(missing)} result(s), e.g. {missing[0]} (matched by name in {args.gt})")
    ssim_name = "basicsr (valid windows in the aligned mask)" if args.protocol == "realblur" else args.ssim
    rows = []
    for p in preds:
        try:
            pred, gt = read_image(p)[0], read_image(gts[p.stem])[0]
            if pred.shape != gt.shape:
                raise ImageError(
                    f"{p}: size {pred.shape[1]}x{pred.shape[0]} differs from its ground truth {gt.shape[1]}x{gt.shape[0]}"
                )
        except ImageError as err:
            raise UsageError(str(err)) from None
        if args.protocol == "realblur":
            score_p, score_s = realblur_psnr_ssim(pred, gt)
        else:
            score_p, score_s = psnr(pred, gt), ssim(pred, gt, args.ssim)
        rows.append({"image": p.stem, "psnr": score_p, "ssim": score_s})
        print(f"{p.stem:50s} PSNR {score_p:6.2f} dB  SSIM {score_s:.4f}")
    mean = {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows]))}
    print(
        f"mean of {len(rows)}: PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f} "
        f"(protocol {args.protocol}: PSNR on 8-bit RGB, no crop; SSIM {ssim_name})"
    )
    if args.json:
        with atomic_write(args.json) as tmp:
            Path(tmp).write_text(
                json.dumps({"protocol": args.protocol, "ssim_variant": ssim_name, "mean": mean, "rows": rows}, indent=1)
            )
    return 0

"""`unblur bench`: run models on a paired set and write a report (table, crops, plots)."""

from __future__ import annotations

import sys
from pathlib import Path

from unblur.cli import UsageError


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="benchmark models on a paired set and write a Markdown report",
        description="Run each model (and the blurred input as 'identity') on DATA/blur vs DATA/sharp "
        "(DATA/kernel/*.npy for the -oracle methods); resumable: finished images are not recomputed.",
    )
    b.add_argument("--data", required=True, metavar="DIR", help="folder with blur/, sharp/ and optionally kernel/")
    b.add_argument(
        "--models",
        default="identity,nafnet-real-world",
        help="comma-separated names (see `unblur models`); identity is always included; "
        "NAME@N runs a diffusion model with N sampling steps (e.g. deblurdiff-small@5,deblurdiff-small@20), "
        "NAME@NsS with anchored sampling at strength S, NAME@NsS-START from START (zs or blurred; "
        "e.g. deblurdiff-small@10s0.3-blurred)",
    )
    b.add_argument("--out", default=None, metavar="REPORT_DIR", help="report folder (default: bench-<data name>)")
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b.add_argument("--tile", type=int, default=None, metavar="N", help="largest tile side (default: per device; 0: whole image)")
    b.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="regression models' number format")
    b.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N pairs")
    b.add_argument(
        "--passthrough",
        default=None,
        metavar="DIR",
        help="also run each model on the sharp photos of DIR and report how unchanged they come back "
        "(PSNR of the output against the photo itself)",
    )
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=run)


def run(args) -> int:
    from unblur.bench.report import write_report
    from unblur.bench.runner import run_model
    from unblur.data.paired import Pair, find_pairs
    from unblur.io import list_images
    from unblur.restore import split_sampling
    from unblur.zoo import CLASSICAL, MODELS

    models = ["identity"] + [m.strip() for m in args.models.split(",") if m.strip() and m.strip() != "identity"]
    try:
        bases = {m: split_sampling(m)[0] for m in models}  # NAME@...: NAME with its sampling settings
    except ValueError as err:
        raise UsageError(str(err)) from None
    unknown = [m for m, b in bases.items() if b not in MODELS and b not in CLASSICAL and not str(b).endswith(".safetensors")]
    if unknown:
        raise UsageError(f"unknown model(s): {', '.join(unknown)} (see `unblur models`)")
    data = Path(args.data)
    try:
        pairs = find_pairs(data)[: args.limit]
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    out = Path(args.out) if args.out else Path(f"bench-{data.name}")
    rows = {}
    for m in models:
        try:
            rows[m] = run_model(m, pairs, out, device=args.device, tile=args.tile, quiet=args.quiet, precision=args.precision)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from None
    passthrough = None
    if args.passthrough:
        photos = [Pair(p.stem, p, p, None) for p in list_images([args.passthrough])] if Path(args.passthrough).is_dir() else []
        if not photos:
            raise UsageError(f"--passthrough {args.passthrough}: no images there")
        passthrough = {
            m: run_model(m, photos, out / "passthrough", device=args.device, tile=args.tile, quiet=args.quiet, precision=args.precision)
            for m in models
            if m != "identity" and not m.endswith("-oracle")  # a non-blind method has no kernel for a sharp photo
        }
    command = "unblur bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "unblur bench"
    report = write_report(out, data, pairs, models, rows, command, passthrough)
    print(report.read_text().split("\n## Gain")[0])
    print(f"report: {report}")
    return 0

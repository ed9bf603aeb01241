"""`unblur demo`: deblur the bundled samples and write a before/after comparison."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    e = sub.add_parser(
        "demo",
        help="deblur the bundled sample photos and write a side-by-side comparison",
        description="Deblur the bundled samples with a model and write a before/after comparison.",
    )
    e.add_argument("-o", "--output", default="demo-out", metavar="DIR", help="output folder (default: demo-out)")
    e.add_argument("--model", default=None, help="model name or file (default: the default model)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    e.set_defaults(func=run)


def run(args) -> int:
    from unblur.demo import run_demo

    return run_demo(Path(args.output), model=args.model, device=args.device, overwrite=args.overwrite)

"""`unblur export`: a regression model as an ONNX graph."""

from __future__ import annotations

from pathlib import Path

from unblur.cli import UsageError


DESCRIPTION = (
    "Write a regression model as an ONNX graph: input 'blurred' (N, 3, H, W) float32 RGB in [0, 1], "
    "any height and width (at least 16 px), output 'restored' of the same shape. Needs the onnx extra."
)


def add_parser(sub) -> None:
    e = sub.add_parser("export", help="export a regression model to ONNX", description=DESCRIPTION)
    e.add_argument(
        "--model", default=None, help="registered model name (see `unblur models`) or a .safetensors file; default: the default model"
    )
    e.add_argument("-o", "--output", required=True, metavar="FILE", help="the .onnx file to write")
    e.add_argument("--opset", type=int, default=18, metavar="N", help="ONNX opset, from 18 to the newest the installed onnx package knows (default 18)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing output")
    e.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    e.set_defaults(func=run)


def run(args) -> int:
    from unblur.export import ExportError, export_onnx

    out = Path(args.output)
    if out.is_dir():
        raise UsageError(f"output {out} is a folder; give the .onnx file to write")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists (use --overwrite to replace it)")
    try:
        info = export_onnx(args.model, out, args.opset)
    except (ExportError, FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
    if not args.quiet:
        check = (
            "not checked (onnxruntime is not installed)"
            if info["max_diff"] is None
            else f"checked: ONNX Runtime matches PyTorch fp32 to {info['max_diff']:.1e} on a sample photo"
        )
        name = args.model or "the default model"
        print(f"{name} ({info['arch']}) -> {out} (opset {info['opset']}, H and W >= {info['min_side']}); {check}")
    return 0

"""`unblur transfer`: render one image's content with another image's blur (BD-Diff's blur transfer)."""

from __future__ import annotations

from pathlib import Path

from unblur.cli import UsageError


def add_parser(sub) -> None:
    t = sub.add_parser(
        "transfer",
        help="give an image the blur of another (BD-Diff)",
        description="Render the content of --structure with the blur pattern of --blur; the result has the "
        "size of --structure. Needs a model that separates structure from blur (bd-diff-small).",
    )
    t.add_argument("--structure", required=True, metavar="A", help="image whose content is kept (usually sharp)")
    t.add_argument("--blur", required=True, metavar="B", help="image whose blur pattern is copied")
    t.add_argument("-o", "--output", required=True, metavar="C", help="output PNG file")
    t.add_argument("--model", default="bd-diff-small", help="registered model name or .safetensors file (default bd-diff-small)")
    t.add_argument("--steps", type=int, default=None, metavar="N", help="sampling steps (default: the model's own)")
    t.add_argument("--seed", type=int, default=0, metavar="S", help="noise seed (default 0)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--tile", type=int, default=512, metavar="N", help="sample in latent tiles above N x N pixels (0: whole)")
    t.add_argument("--max-megapixels", type=float, default=100.0, metavar="MP", help="refuse images larger than this")
    t.add_argument("--overwrite", action="store_true", help="replace an existing output")
    t.set_defaults(func=run)


def run(args) -> int:
    import torch

    from unblur.device import pick_device
    from unblur.io import ImageError, read_image, write_image
    from unblur.restore import image_tensor, tensor_image
    from unblur.zoo import load_model

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists (use --overwrite to replace it)")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    try:
        images = [read_image(p, max_pixels=int(args.max_megapixels * 1e6)) for p in (args.structure, args.blur)]
    except ImageError as err:
        raise UsageError(str(err)) from None
    device = pick_device(args.device)
    try:
        model, _ = load_model(args.model, device)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UsageError(str(err)) from None
    if not model.transfers_blur:
        raise UsageError(f"{args.model} cannot transfer blur (it does not separate structure from blur): use bd-diff-small")
    a, b = (image_tensor(rgb).to(device) for rgb, _ in images)
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        result = model.transfer(a, b, steps=args.steps or model.default_steps, generator=generator, tile=args.tile)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, tensor_image(result), images[0][1], overwrite=args.overwrite)
    print(f"{args.structure} with the blur of {args.blur} -> {out}")
    return 0

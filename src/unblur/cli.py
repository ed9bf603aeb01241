"""The ``unblur`` command. Each sub-command imports what it needs when it runs,
so ``unblur --help`` is instant and a missing optional extra breaks only its command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UsageError(Exception):
    """A mistake in what the user asked for: printed as one line, exit code 2."""


def _err(msg: str) -> None:
    print(f"unblur: error: {msg}", file=sys.stderr)


def cmd_deblur(args) -> int:
    from tqdm import tqdm

    from unblur.io import ImageError, list_images, read_image, write_image
    from unblur.restore import Restorer

    paths = list_images(args.inputs)
    if not paths:
        raise UsageError(f"no images found in {' '.join(args.inputs)}")
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"output {outdir} exists and is not a folder")
    try:
        restorer = Restorer(args.model, device=args.device, tile=args.tile)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UsageError(str(err)) from None
    outdir.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[Path, str]] = []
    claimed: dict[str, Path] = {}
    bar = tqdm(paths, desc="deblur", unit="img", disable=len(paths) < 2 or args.quiet)
    for path in bar:
        target = outdir / f"{path.stem}.png"
        if target.name in claimed:
            failed.append((path, f"same output name as {claimed[target.name]} ({target})"))
            continue
        claimed[target.name] = path
        if target.exists() and not args.overwrite:
            failed.append((path, f"{target} exists (use --overwrite to replace it)"))
            continue
        try:
            rgb, info = read_image(path, max_pixels=int(args.max_megapixels * 1e6))
            write_image(target, restorer.restore(rgb), info, overwrite=args.overwrite)
        except ImageError as err:
            failed.append((path, str(err)))
        except (RuntimeError, MemoryError) as err:  # e.g. out of memory on a huge tile: go on with the rest
            failed.append((path, f"{path}: {type(err).__name__}: {str(err).splitlines()[0]}"))
        else:
            if not args.quiet and len(paths) < 2:
                print(f"{path} -> {target}")
    for path, reason in failed:
        tqdm.write(f"unblur: failed: {reason}", file=sys.stderr)
    done = len(paths) - len(failed)
    if not args.quiet and len(paths) > 1:
        print(f"{done} of {len(paths)} images written to {outdir}")
    if failed:
        _err(f"{len(failed)} of {len(paths)} failed: {', '.join(str(p) for p, _ in failed)}")
        return 1
    return 0


def cmd_models(args) -> int:
    from safetensors import safe_open

    from unblur.zoo import DEFAULT, MODELS

    rows = [("model", "params", "file", "what; trained on")]
    for name, entry in MODELS.items():
        params, size = "-", "missing"
        if entry.path.exists():
            with safe_open(str(entry.path), framework="pt") as f:
                n = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
            params, size = f"{n / 1e6:.2f} M", f"{entry.path.stat().st_size / 2**20:.1f} MiB"
        rows.append((name + (" (default)" if name == DEFAULT else ""), params, size, f"{entry.summary}; {entry.trained_on}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    return 0


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def cmd_demo(args) -> int:
    from unblur.demo import run_demo

    return run_demo(Path(args.output), model=args.model, device=args.device, overwrite=args.overwrite)


def cmd_train(args) -> int:
    from unblur.train.config import load_config
    from unblur.train.loop import train

    try:
        cfg = load_config(args.config, args.set or [])
    except (KeyError, TypeError, ValueError, FileNotFoundError) as err:
        raise UsageError(f"config: {err}") from None
    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem if args.config else "default")
    summary = train(cfg, out, resume=args.resume, quiet=args.quiet, stop_at=args.stop_at)
    print(f"trained steps {summary['start']}..{summary['steps']} in {summary['seconds']:.0f} s; best val PSNR {summary['best_val_psnr']:.2f} dB; run in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unblur", description="Remove motion blur from photos.")
    from unblur import __version__

    p.add_argument("--version", action="version", version=f"unblur {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("deblur", help="deblur images or folders of images", description="Deblur images; writes OUTDIR/<name>.png, same size and bit depth as the input.")
    d.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders (folders: their images, not recursive)")
    d.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    d.add_argument("--model", default=None, help="registered model name (see `unblur models`) or a .safetensors file; default: the default model")
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: cuda if available)")
    d.add_argument("--tile", type=int, default=512, metavar="N", help="process images larger than N x N in overlapping tiles (0: whole image); default 512")
    d.add_argument("--max-megapixels", type=float, default=100.0, metavar="MP", help="refuse images larger than this (default 100)")
    d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    d.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    d.set_defaults(func=cmd_deblur)

    m = sub.add_parser("models", help="list the registered models", description="List the registered models.")
    m.set_defaults(func=cmd_models)

    e = sub.add_parser("demo", help="deblur the bundled sample photos and write a side-by-side comparison", description="Deblur the bundled samples with a model and write a before/after comparison.")
    e.add_argument("-o", "--output", default="demo-out", metavar="DIR", help="output folder (default: demo-out)")
    e.add_argument("--model", default=None, help="model name or file (default: the default model)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    e.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train a model from a YAML config", description="Train a model. Settings: defaults <- CONFIG <- --set overrides.")
    t.add_argument("config", nargs="?", default=None, help="YAML config (default: the built-in defaults)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)")
    t.add_argument("--resume", default=None, metavar="auto|PATH", help="continue from the newest checkpoint of --out (auto) or from a checkpoint folder")
    t.add_argument("--out", default=None, metavar="RUN_DIR", help="run folder (default: runs/<config name>)")
    t.add_argument("--stop-at", type=int, default=None, metavar="STEP", help="stop after STEP (with a checkpoint); continue later with --resume auto")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as err:
        _err(str(err))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

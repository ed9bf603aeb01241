"""`unblur train`: train a model from a YAML config."""

from __future__ import annotations

import os
from pathlib import Path

from unblur.cli import UsageError


def add_parser(sub) -> None:
    t = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model. Settings: defaults <- CONFIG <- --set overrides. "
        "On several GPUs or processes: torchrun --nproc_per_node=N -m unblur train CONFIG ... "
        "(data.batch is per process).",
    )
    t.add_argument("config", nargs="?", default=None, help="YAML config (default: the built-in defaults)")
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)"
    )
    t.add_argument(
        "--resume",
        default=None,
        metavar="auto|PATH",
        help="continue from the newest checkpoint of --out (auto) or from a checkpoint folder",
    )
    t.add_argument("--out", default=None, metavar="RUN_DIR", help="run folder (default: runs/<config name>)")
    t.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="STEP",
        help="stop after STEP (with a checkpoint); continue later with --resume auto",
    )
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=run)


def run(args) -> int:
    from unblur.train.config import load_config
    from unblur.train.loop import leave_process_group

    try:
        cfg = load_config(args.config, args.set or [])
    except (KeyError, TypeError, ValueError, FileNotFoundError) as err:
        raise UsageError(f"config: {err}") from None
    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem if args.config else "default")
    try:
        return _train(cfg, out, args)
    finally:
        leave_process_group()  # under torchrun: a group left open can abort a process at exit (gloo's threads)


def _train(cfg: dict, out: Path, args) -> int:
    from unblur.train.loop import train

    if cfg["stages"]:
        from unblur.train.stages import train_stages

        if args.stop_at is not None:
            raise UsageError("--stop-at applies to one-stage configs; a staged run stops and resumes per stage")
        train_stages(cfg, out, resume=args.resume, quiet=args.quiet)
        if os.environ.get("RANK", "0") == "0":
            print(f"trained {len(cfg['stages'])} stages; final model {out / 'last.safetensors'}")
        return 0
    summary = train(cfg, out, resume=args.resume, quiet=args.quiet, stop_at=args.stop_at)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, one summary is enough
        return 0
    print(
        f"trained steps {summary['start']}..{summary['steps']} in {summary['seconds']:.0f} s; best val PSNR {summary['best_val_psnr']:.2f} dB; run in {out}"
    )
    return 0

"""`unblur cache`: synthesise training pairs once into shards on disk (``data.cache`` of a training config)."""

from __future__ import annotations

from pathlib import Path

from unblur.cli import UsageError


def add_parser(sub) -> None:
    c = sub.add_parser(
        "cache",
        help="synthesise training pairs once, for training on a CPU",
        description="Write PAIRS blurred/sharp crops of a preset into OUT (shards of uint8 .npy and cache.json), "
        "for `unblur train --set data.cache=OUT`. The same command gives the same files; an interrupted "
        "build resumes where it stopped.",
    )
    c.add_argument("sharp_dir", metavar="SHARP_DIR", help="folder of sharp photos")
    c.add_argument("-o", "--output", required=True, metavar="OUT")
    c.add_argument("--preset", default="real-world", help="blur preset or mixture a+b (default real-world)")
    c.add_argument("--pairs", type=int, default=24576, metavar="N", help="number of pairs (default 24576)")
    c.add_argument("--crop", type=int, default=176, metavar="PX", help="side of each stored crop (default 176)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--photo-side",
        metavar="LO,HI",
        help="see each crop's photo downscaled first, its long side drawn in [LO, HI] px (default: photos as they are)",
    )
    c.add_argument("--shard", type=int, default=256, metavar="N", help="pairs per file (default 256)")
    c.add_argument("--workers", type=int, default=None, metavar="N", help="processes (default: one per core)")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from unblur.data.cache import build_cache
    from unblur.device import cpu_cores

    if not Path(args.sharp_dir).is_dir():
        raise UsageError(f"{args.sharp_dir} is not a folder")
    for name in ("pairs", "crop", "shard"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    photo_side = None
    if args.photo_side:
        try:
            photo_side = tuple(float(v) for v in args.photo_side.split(","))
        except ValueError:
            photo_side = ()
        if len(photo_side) != 2 or not 0 < photo_side[0] <= photo_side[1]:
            raise UsageError(f"--photo-side wants two lengths LO,HI in pixels with 0 < LO <= HI, not {args.photo_side!r}")
    workers = args.workers or cpu_cores()
    bar = tqdm(desc=f"cache {args.preset}", unit="shard", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        info = build_cache(
            args.sharp_dir, args.output, args.preset, args.pairs, args.crop, args.seed, args.shard, workers, progress,
            photo_side,
        )
    except (KeyError, ValueError, FileNotFoundError) as err:
        raise UsageError(str(err).strip("'\"")) from None
    bar.close()
    if not args.quiet:
        print(f"{info['pairs']} pairs of {info['crop']} px ({info['preset']}) in {args.output}")
    return 0

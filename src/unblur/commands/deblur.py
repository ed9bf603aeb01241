"""`unblur deblur`: deblur image files and folders with a trained model."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from unblur.cli import UsageError, _err


def add_parser(sub) -> None:
    d = sub.add_parser(
        "deblur",
        help="deblur images or folders of images",
        description="Deblur images; writes OUTDIR/<name>.png, same size and bit depth as the input.",
    )
    d.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders (folders: their images, not recursive)")
    d.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    d.add_argument(
        "--model",
        default=None,
        help="registered model name (see `unblur models`) or a .safetensors file; default: the default model",
    )
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: cuda if available)")
    d.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="N",
        help="largest tile side: larger images are processed in overlapping tiles (0: whole image); "
        "default 640 on a CPU, 1024 on a GPU",
    )
    d.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="number format of regression models: auto = bf16 on GPUs and on CPUs that compute it natively "
        "(AVX512-BF16/AMX), else fp32; fp16 is for GPUs",
    )
    d.add_argument(
        "--self-ensemble",
        type=int,
        default=1,
        choices=[1, 2, 4, 8],
        metavar="K",
        help="regression models: average the network's outputs on K flipped and transposed copies of the photo "
        "(1, 2, 4 or 8; K times the time, a little sharper; default 1)",
    )
    d.add_argument(
        "--max-megapixels", type=float, default=100.0, metavar="MP", help="refuse images larger than this (default 100)"
    )
    g = d.add_argument_group("diffusion models (deblurdiff-small, bd-diff-small, or DeblurDiff on Stable Diffusion)")
    g.add_argument(
        "--sd", default=None, metavar="PATH", help="local Stable Diffusion 2.x folder (diffusers format) for models built on it"
    )
    g.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="sampling steps (default: the model's own: 10 for the bundled small models, 50 for DeblurDiff on Stable Diffusion)",
    )
    g.add_argument("--seed", type=int, default=0, metavar="S", help="noise seed: the same seed gives the same result (default 0)")
    g.add_argument(
        "--samples",
        type=int,
        default=1,
        metavar="K",
        help="draw K results per image, seeds S..S+K-1, written as NAME-1.png ... NAME-K.png (or see --mean)",
    )
    g.add_argument(
        "--mean", action="store_true", help="with --samples K: write the per-pixel average of the K draws as NAME.png instead"
    )
    g.add_argument(
        "--uncertainty",
        action="store_true",
        help="with --samples K: also write NAME-uncertainty.png, the per-pixel standard deviation of the K draws "
        "(grey, linear: black 0, white 0.1 of the full range or more)",
    )
    g.add_argument(
        "--strength",
        type=float,
        default=None,
        metavar="S",
        help="anchored sampling: run only the last S of the steps (0 < S <= 1), starting from the input's latent "
        "noised to that point instead of pure noise (default: the model's own, 1 for the bundled models)",
    )
    g.add_argument(
        "--start",
        default=None,
        metavar="FROM",
        help="with --strength: the latent to start from, zs (DeblurDiff's deblurred latent, its default) or blurred",
    )
    g.add_argument(
        "--save-kernels",
        action="store_true",
        help="also write NAME-kernels.png: the predicted blur kernels (brightness: strength, hue: orientation)",
    )
    d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    d.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    d.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from unblur.io import ImageError, list_images, read_image, write_image
    from unblur.restore import make_restorer

    paths = list_images(args.inputs)
    if not paths:
        raise UsageError(f"no images found in {' '.join(args.inputs)}")
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"output {outdir} exists and is not a folder")
    if args.samples < 1:
        raise UsageError(f"--samples must be at least 1, got {args.samples}")
    if (args.mean or args.uncertainty) and args.samples < 2:
        raise UsageError(f"--{'mean' if args.mean else 'uncertainty'} needs --samples K with K of at least 2")
    try:
        restorer = make_restorer(
            args.model,
            device=args.device,
            tile=args.tile,
            steps=args.steps,
            seed=args.seed,
            sd=args.sd,
            precision=args.precision,
            strength=args.strength,
            start=args.start,
            ensemble=args.self_ensemble,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        raise UsageError(str(err)) from None
    if restorer.needs_kernel:
        raise UsageError(f"{args.model} is non-blind (it needs the true kernel): use it in `unblur bench` on a set with kernels")
    if (args.samples > 1 or args.save_kernels) and not restorer.generative:
        raise UsageError(
            "--samples, --mean, --uncertainty and --save-kernels are for diffusion models (e.g. --model deblurdiff-small)"
        )
    if args.save_kernels and not restorer.model.predicts_kernels:
        raise UsageError(f"--save-kernels needs a model that predicts blur kernels (deblurdiff-small); {args.model} does not")
    outdir.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[Path, str]] = []
    claimed: dict[str, Path] = {}
    bar = tqdm(paths, desc="deblur", unit="img", disable=len(paths) < 2 or args.quiet)
    for path in bar:
        targets = outputs(outdir, path.stem, args.samples, args.save_kernels, args.mean, args.uncertainty)
        target = targets[0]
        if target.name in claimed:
            failed.append((path, f"same output name as {claimed[target.name]} ({target})"))
            continue
        claimed[target.name] = path
        existing = [t for t in targets if t.exists()]
        if existing and not args.overwrite:
            failed.append((path, f"{existing[0]} exists (use --overwrite to replace it)"))
            continue
        try:
            rgb, info = read_image(path, max_pixels=int(args.max_megapixels * 1e6))
            if restorer.generative:
                write_samples(restorer, rgb, info, targets, args)
            else:
                write_image(target, restore_with_bar(restorer, rgb, args.quiet), info, overwrite=args.overwrite)
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


def restore_with_bar(restorer, rgb, quiet: bool):
    """``restorer.restore(rgb)`` with a per-tile progress bar when the photo takes several tiles."""
    if quiet or restorer.tiles(rgb.shape[:2]) < 2:
        return restorer.restore(rgb)
    with progress_bar("tiles", "tile") as progress:
        return restorer.restore(rgb, progress=progress)


@contextmanager
def progress_bar(desc: str, unit: str, disable: bool = False):
    """A transient bar, and the ``progress(done, total)`` callback that moves it (the Restorer's)."""
    from tqdm import tqdm

    with tqdm(desc=desc, unit=unit, leave=False, dynamic_ncols=True, disable=disable) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress


def outputs(outdir: Path, stem: str, samples: int, kernels: bool, mean: bool = False, uncertainty: bool = False) -> list[Path]:
    """The files one input makes, the main one first: NAME.png (one draw, or with ``mean`` the mean of K), else
    NAME-1.png ... NAME-K.png; then NAME-uncertainty.png and NAME-kernels.png if asked."""
    names = [f"{stem}.png"] if samples == 1 or mean else [f"{stem}-{k}.png" for k in range(1, samples + 1)]
    names += [f"{stem}-uncertainty.png"] * uncertainty + [f"{stem}-kernels.png"] * kernels
    return [outdir / n for n in names]


def write_samples(restorer, rgb, info, targets: list[Path], args) -> None:
    """A diffusion model's results for seeds S..S+K-1 (and the kernel picture of the first), with one bar counting
    the sampling steps of all K draws: each draw written, or (``--mean``) their mean; with ``--uncertainty``
    the picture of their standard deviation (:func:`unblur.restore.uncertainty_picture`)."""
    from unblur.io import write_image
    from unblur.restore import RunningStats, uncertainty_picture

    stats = RunningStats() if args.mean or args.uncertainty else None
    pictures = targets[-1:] if args.save_kernels else []  # 8-bit RGB pictures, whatever the input
    uncertainty = targets[len(targets) - len(pictures) - 1] if args.uncertainty else None
    with progress_bar(f"{args.samples} samples" if args.samples > 1 else "sampling", "step", disable=args.quiet) as progress:
        draws = restorer.draws(rgb, args.seed, args.samples, progress=progress, kernels=args.save_kernels)
        for k, (image, kernels) in enumerate(draws):
            if stats is not None:
                stats.add(image)
            if not args.mean:
                write_image(targets[k], image, info, overwrite=args.overwrite)
            if kernels is not None:
                write_image(pictures[0], kernels, overwrite=args.overwrite)
    if args.mean:
        write_image(targets[0], stats.mean, info, overwrite=args.overwrite)
    if uncertainty is not None:
        write_image(uncertainty, uncertainty_picture(stats.std), overwrite=args.overwrite)

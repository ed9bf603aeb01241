"""`unblur serve`: the web page on a local port."""

from __future__ import annotations

from unblur.cli import UsageError


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve the web page", description="Serve the unblur web page (needs the `serve` extra).")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument(
        "--models",
        default=None,
        help="comma-separated model names offered on the page, the first preselected "
        "(default: every bundled model, the default model first)",
    )
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--workers", type=int, default=1, help="images processed at once (default 1)")
    s.add_argument("--queue", type=int, default=8, help="requests that may wait for a worker; more get 'busy, retry' (default 8)")
    s.add_argument("--max-upload-mb", type=float, default=30.0)
    s.add_argument("--max-megapixels", type=float, default=40.0)
    s.add_argument("--timeout", type=float, default=300.0, help="seconds per request, waiting included")
    s.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn

        from unblur.serve.app import Limits, create_app
    except ImportError as err:
        raise UsageError(f"the web page needs the serve extra: pip install 'unblur[serve]' ({err})") from None
    from unblur.zoo import MODELS

    if args.models:
        names = [m.strip() for m in args.models.split(",")]
        unknown = [m for m in names if m not in MODELS]
        if unknown:
            raise UsageError(f"unknown model(s) {', '.join(unknown)} (registered: {', '.join(MODELS)})")
    else:
        names, skipped = bundled_models()
        if skipped:
            print(f"unblur: not offering {', '.join(skipped)}", flush=True)
    limits = Limits(args.max_upload_mb, args.max_megapixels, args.workers, args.queue, args.timeout)
    app = create_app(names, limits, device=args.device)
    print(f"unblur: serving http://{args.host}:{args.port}/ (models: {', '.join(names)})", flush=True)
    # Connections beyond those a full queue can hold are refused with 503 by uvicorn itself,
    # so the bodies held in memory stay bounded too.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", limit_concurrency=args.workers + args.queue + 64)
    return 0


def bundled_models() -> tuple[list[str], list[str]]:
    """(the registered models the page can offer, the default first; the others, each with the reason):
    a model is left out when its weights are missing, or when it is a diffusion model and the diffusion
    extra (diffusers) is not installed."""
    import importlib.util

    from unblur.methods import method_class
    from unblur.modelfile import read_model_meta
    from unblur.zoo import DEFAULT, MODELS

    diffusers = importlib.util.find_spec("diffusers") is not None
    names, skipped = [], []
    for name in sorted(MODELS, key=lambda n: n != DEFAULT):
        if not MODELS[name].path.exists():
            skipped.append(f"{name} (weights missing)")
        elif not diffusers and method_class(read_model_meta(MODELS[name].path)["arch"]).generative:
            skipped.append(f"{name} (a diffusion model: needs pip install 'unblur[diffusion]')")
        else:
            names.append(name)
    return names, skipped

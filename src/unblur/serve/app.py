"""A small ASGI app: one static page plus a JSON/PNG API, with bounded work.

Why Starlette: the page needs three routes and a static folder; Starlette gives
them with no template engine and no front-end build, and uvicorn serves it.

API
- ``GET /api/models`` -> ``{"models": [...], "default": name, "generative": [...], "speed": {name: class},
  "limits": {...}}`` (``generative``: the diffusion models, which take ``steps`` and ``seed``; ``speed``: "fast"
  or "slow (diffusion)", from each model file's metadata)
- ``POST /api/deblur?model=NAME&name=FILE[&steps=N][&seed=S][&samples=K&mean=1][&job=ID]`` with the raw image bytes
  as the body (``samples``/``mean``, diffusion models only: the per-pixel mean of K draws, seeds S..S+K-1)
  -> 200 ``image/png`` (same width/height, 16-bit in -> 16-bit out; headers ``X-Image-Size``, ``X-Seconds`` and
  ``X-Passes``, the network passes the job made, so a client that never saw a progress poll can show the total), or a JSON
  ``{"error": "one line"}`` with 400 (bad image / bad model / bad job id), 409 (job id in use),
  413 (too large), 503 + ``Retry-After`` (busy), 504 (timed out).
- ``GET /api/progress?job=ID`` -> ``{"done": d, "total": t, "state": s}`` for a request that sent ``job=ID``:
  network passes done of ``total`` (the Restorer's tiles, or a diffusion model's sampling steps over all its
  draws; ``total`` 0 until known), ``state`` one of queued, running, done, failed. 404 once it is forgotten (see :class:`Jobs`).
- ``GET /api/health`` -> ``{"ok": true, "busy": n, "waiting": m}``

Nothing the client sends is ever used as a path: uploads are decoded in memory.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
MAX_STEPS = 200  # sampling steps one request may ask for: the cost grows with them
MAX_SAMPLES = 16  # draws one request may average (each costs a full sampling run)


@dataclass
class Limits:
    max_upload_mb: float = 30.0  # encoded bytes of one upload
    max_megapixels: float = 40.0  # decoded size of one image
    workers: int = 1  # images processed at the same time (each holds a copy of the image in memory)
    queue: int = 8  # requests allowed to wait for a worker; beyond that: 503 busy
    timeout_s: float = 300.0  # per request, waiting included


#: A job id a client may choose: letters, digits, '-' and '_', at most 64 of them (never a path).
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class Job:
    """One request's progress; its worker thread writes it, ``/api/progress`` reads it."""

    done: int = 0
    total: int = 0
    state: str = "queued"
    finished_at: float | None = None

    def update(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def view(self) -> dict:
        return {"done": self.done, "total": self.total, "state": self.state}


class Jobs:
    """The progress of recent requests by the id their client chose, in bounded memory: a finished job is kept
    ``keep_s`` seconds (for the page's last look), then forgotten, and at most ``cap`` jobs are held: beyond
    that the oldest finished job goes first, else the oldest of all (its request still runs, unobserved)."""

    def __init__(self, cap: int = 256, keep_s: float = 60.0):
        self.cap, self.keep_s = cap, keep_s
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._jobs)

    def start(self, job_id: str) -> Job | None:
        """A new job under ``job_id``, or None while an unfinished one holds that id."""
        with self._lock:
            self._forget_old()
            old = self._jobs.get(job_id)
            if old is not None and old.finished_at is None:
                return None
            self._jobs.pop(job_id, None)
            while len(self._jobs) >= self.cap:
                finished = next((k for k, j in self._jobs.items() if j.finished_at is not None), None)
                self._jobs.pop(finished if finished is not None else next(iter(self._jobs)))
            job = self._jobs[job_id] = Job()
            return job

    def finish(self, job: Job, ok: bool) -> None:
        with self._lock:
            job.state = "done" if ok else "failed"
            job.finished_at = time.monotonic()

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            self._forget_old()
            job = self._jobs.get(job_id)
            return job.view() if job else None

    def _forget_old(self) -> None:
        now = time.monotonic()
        for key in [k for k, j in self._jobs.items() if j.finished_at is not None and now - j.finished_at > self.keep_s]:
            del self._jobs[key]


def speed_class(meta: dict) -> str:
    """How long a photo takes with a model, in words for the page, from its file's metadata: a diffusion model
    runs its networks once per sampling step, a regression network once per tile."""
    from unblur.methods import method_class

    return "slow (diffusion)" if method_class(meta["arch"]).generative else "fast"


class Models:
    """Loads each allowed model once, on first use, and shares it between requests."""

    def __init__(self, names: list[str], device: str = "auto", tile: int | None = None):
        self.names, self.device, self.tile = names, device, tile
        self._loaded: dict = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        from unblur.restore import Restorer

        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = Restorer(name, device=self.device, tile=self.tile)
            return self._loaded[name]


def _error(status: int, message: str, **headers) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _download_name(name: str) -> str:
    """``photo.jpg`` -> ``photo-unblurred.png``, for the Content-Disposition header only."""
    stem = Path(name.replace("\\", "/")).name.rsplit(".", 1)[0] or "image"
    return f"{unicodedata.normalize('NFC', stem)[:120]}-unblurred.png"


def create_app(models: list[str], limits: Limits | None = None, device: str = "auto", tile: int | None = None) -> Starlette:
    from unblur.io import ImageError, decode_image, encode_png
    from unblur.methods import method_class
    from unblur.modelfile import read_model_meta
    from unblur.restore import RunningStats
    from unblur.zoo import resolve

    limits = limits or Limits()
    pool = Models(models, device, tile)
    # the diffusion models and speed classes, from the files' metadata: nothing is loaded before a request needs it
    metas = {name: read_model_meta(resolve(name)) for name in models}
    generative = [name for name in models if method_class(metas[name]["arch"]).generative]
    speeds = {name: speed_class(metas[name]) for name in models}
    workers = asyncio.Semaphore(limits.workers)
    state = {"busy": 0, "waiting": 0}
    jobs = Jobs()

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def list_models(request: Request) -> Response:
        return JSONResponse(
            {
                "models": models,
                "default": models[0],
                "generative": generative,
                "speed": speeds,
                "limits": {"max_upload_mb": limits.max_upload_mb, "max_megapixels": limits.max_megapixels},
            }
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, **state})

    def job_id(request: Request) -> str | None:
        """The ``job`` query parameter, "" when absent, or None when it is not a valid id."""
        raw = request.query_params.get("job", "")
        return raw if not raw or JOB_ID.fullmatch(raw) else None

    def bad_job(request: Request) -> Response:
        shown = request.query_params.get("job", "")[:40].encode("unicode_escape").decode()
        return _error(400, f"job must be 1 to 64 letters, digits, '-' or '_', got '{shown}'")

    async def progress(request: Request) -> Response:
        key = job_id(request)
        if not key:
            return bad_job(request)
        view = jobs.get(key)
        if view is None:
            return _error(404, f"no job '{key}': not started yet, or finished more than {jobs.keep_s:g} s ago")
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    async def read_body(request: Request) -> bytes | None:
        """The upload, or None once it grows past the limit (we stop reading there)."""
        cap = int(limits.max_upload_mb * 2**20)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def sampling_options(request: Request, model: str) -> dict | str:
        """``steps``, ``seed``, ``samples`` and ``mean`` from the query (for diffusion models only), or a one-line error."""
        options = {}
        for key, low, high in (("steps", 1, MAX_STEPS), ("seed", 0, 2**31 - 1), ("samples", 1, MAX_SAMPLES), ("mean", 0, 1)):
            raw = request.query_params.get(key, "")
            if raw:
                if not raw.isdigit() or not low <= int(raw) <= high:
                    return f"{key} must be a whole number from {low} to {high}, got '{raw[:20]}'"
                options[key] = int(raw)
        if options and model not in generative:
            return f"steps, seed, samples and mean are options of diffusion models; '{model}' is deterministic"
        if options.get("samples", 1) > 1 and not options.get("mean"):
            return "samples=K returns one image, the mean of the K draws: send mean=1 with it"
        return options

    def work(name: str, data: bytes, model: str, options: dict, job: Job) -> tuple[bytes, tuple[int, int]]:
        rgb, info = decode_image(data, name, int(limits.max_megapixels * 1e6))
        restorer = pool.get(model)
        # counts: tiles of a regression model, sampling steps of a diffusion model (the callbacks set the total)
        job.update(0, 1 if restorer.generative else restorer.tiles(rgb.shape[:2]))
        if restorer.generative:
            stats = RunningStats()
            seed, count = options.get("seed", restorer.seed), options.get("samples", 1)
            for image, _ in restorer.draws(rgb, seed, count, steps=options.get("steps"), progress=job.update):
                stats.add(image)
            result = stats.mean
        else:
            result = restorer.restore(rgb, progress=job.update)
        job.update(job.total, job.total)
        return encode_png(result, info), (rgb.shape[1], rgb.shape[0])

    async def process(label: str, data: bytes, model: str, options: dict, job: Job) -> tuple[bytes, tuple[int, int]] | Response:
        """Wait for a worker, then deblur: (PNG, (width, height)), or the error response."""
        state["waiting"] += 1
        start = time.monotonic()
        try:
            try:
                await asyncio.wait_for(workers.acquire(), timeout=limits.timeout_s)
            except asyncio.TimeoutError:
                return _error(503, "busy: waited too long for a free worker, retry later", **{"Retry-After": "30"})
        finally:
            state["waiting"] -= 1
        state["busy"] += 1
        job.state = "running"
        try:
            left = max(1.0, limits.timeout_s - (time.monotonic() - start))
            # The thread cannot be cancelled: on timeout the worker slot stays taken until it ends.
            return await asyncio.wait_for(asyncio.to_thread(work, label, data, model, options, job), timeout=left)
        except ImageError as err:
            return _error(400, str(err))
        except asyncio.TimeoutError:
            return _error(504, f"{label}: took longer than {limits.timeout_s:g} s")
        except (RuntimeError, MemoryError) as err:
            return _error(500, f"{label}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        finally:
            state["busy"] -= 1
            workers.release()

    async def deblur(request: Request) -> Response:
        model = request.query_params.get("model") or models[0]
        name = request.query_params.get("name") or "upload"
        label = name.replace("\n", " ")[:200]
        if model not in models:
            return _error(400, f"unknown model '{model[:60]}' (available: {', '.join(models)})")
        options = sampling_options(request, model)
        if isinstance(options, str):
            return _error(400, options)
        key = job_id(request)
        if key is None:
            return bad_job(request)
        data = await read_body(request)
        if data is None:
            return _error(413, f"{label}: upload larger than {limits.max_upload_mb:g} MB")
        if state["waiting"] >= limits.queue:  # no await between this check and the increment in process()
            return _error(503, "busy: too many images in the queue, retry in a moment", **{"Retry-After": "5"})
        job = jobs.start(key) if key else Job()  # without an id: progress nobody reads
        if job is None:
            return _error(409, f"job '{key}' is still running: send another id")
        start, result = time.monotonic(), None
        try:
            result = await process(label, data, model, options, job)
        finally:
            jobs.finish(job, ok=isinstance(result, tuple))
        if isinstance(result, Response):
            return result
        png, (w, h) = result
        download = _download_name(name)
        plain = unicodedata.normalize("NFKD", download).encode("ascii", "ignore").decode().replace('"', "")
        return Response(
            png,
            media_type="image/png",
            headers={
                "Content-Disposition": f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(download)}",
                "X-Image-Size": f"{w}x{h}",
                "X-Seconds": f"{time.monotonic() - start:.2f}",
                "X-Passes": str(job.total),
                "Cache-Control": "no-store",
            },
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/models", list_models),
            Route("/api/health", health),
            Route("/api/progress", progress),
            Route("/api/deblur", deblur, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )

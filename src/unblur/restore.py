"""Deblurring whole photos with a trained model: load once, then restore image after image."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unblur.device import cpu_cores, intra_op_threads
from unblur.tiling import count_tiles, run_tiled


class Restorer:
    """A loaded model ready for photos.

    ``restore(rgb)`` takes float32 (H, W, 3) in [0, 1] and returns the same shape.
    ``tile`` bounds memory: images larger than ``tile`` x ``tile`` are processed in
    overlapping tiles (0 = whole image at once).

    The model is a method (:mod:`unblur.methods.base`); the Restorer calls its contract only. Generative
    methods (DeblurDiff, BD-Diff) draw their result from noise: ``steps`` sampling steps (None: the
    model's default) from seed ``seed``; they tile in latent space themselves, so one coherent sample
    covers the whole image (:meth:`sample`). ``strength`` and ``start`` (models that declare ``anchors``;
    None: the model's own settings): anchored sampling, only the last ``strength`` fraction of the steps,
    from the ``start`` latent noised (:meth:`unblur.methods.base.Method.sample`).

    ``ensemble`` (regression models): the self-ensemble of Lim et al. 2017 (EDSR+), the mean of the network's
    outputs on the first ``ensemble`` of the 8 flips and transposes of each tile (:func:`dihedral`), each
    turned back: ``ensemble`` times the time, for the gain the default's model card measures.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        tile: int | None = None,
        overlap: int = 48,
        prior: str = "tile",
        steps: int | None = None,
        seed: int = 0,
        sd: str | None = None,
        precision: str = "auto",
        strength: float | None = None,
        start: str | None = None,
        ensemble: int = 1,
    ):
        from unblur.device import pick_device, resolve_precision
        from unblur.zoo import load_model

        self.device = pick_device(device)
        self.model, self.meta = load_model(model, self.device, sd=sd)
        self.generative = self.model.generative
        self.tile = default_tile(self.device, self.generative) if tile is None else tile
        self.overlap = overlap
        # regression networks run in bf16 where the hardware computes it natively (see unblur.device);
        # diffusion models keep fp32: their many sampling steps compound rounding
        if self.model.low_precision is None and precision not in ("auto", "fp32"):
            raise ValueError(f"--precision {precision} is for regression models; diffusion models run in fp32")
        self.dtype = torch.float32 if self.model.low_precision is None else resolve_precision(precision, self.device)
        self._prepare()
        # a global prior (BlurDM): computed per tile, or once per image and shared by its tiles
        if prior not in ("tile", "image"):
            raise ValueError(f"prior must be 'tile' or 'image', got {prior!r}")
        self.prior = prior
        if ensemble not in ENSEMBLES:
            raise ValueError(f"self-ensemble must be one of {', '.join(map(str, ENSEMBLES))} passes, got {ensemble}")
        if ensemble > 1 and self.generative:
            raise ValueError("the self-ensemble is for regression models; diffusion models average draws (--samples K --mean)")
        if ensemble > 1 and prior == "image":
            raise ValueError("the self-ensemble turns each tile, and a whole-image prior would not turn with it: prior='tile'")
        self.ensemble = ensemble
        if (steps is not None or seed) and not self.generative:
            raise ValueError("steps and seed are options of diffusion models; this model is deterministic")
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.steps, self.seed = steps, seed
        self.anchoring = check_anchoring(self.model, strength, start)

    def _prepare(self) -> None:
        """Channels-last weights on the CPU (oneDNN's fast layout); the weights themselves in bf16/fp16 for a
        plain network (no casts at every layer), autocast for a method whose parts may need fp32."""
        from unblur.device import channels_last

        self.cast_weights = False
        if self.generative:
            return
        if self.device.type == "cpu":
            channels_last(self.model)
        self.cast_weights = self.dtype != torch.float32 and self.model.low_precision == "weights"
        if self.cast_weights:
            self.model.to(self.dtype)

    def tiles(self, shape: tuple[int, int]) -> int:
        """How many network passes :meth:`restore` makes for an (H, W) image (for progress bars)."""
        return count_tiles(shape, self.tile, self.overlap) if self.tile else 1

    @torch.no_grad()
    def _run(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < 16:  # reflection padding inside the network needs a few pixels: extend tiny images first
            x = F.pad(x, (0, max(0, 16 - w), 0, max(0, 16 - h)), mode="replicate")
        x = x.to(self.device, self.dtype if self.cast_weights else torch.float32)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = self.dtype != torch.float32 and not self.cast_weights
        y = 0
        for k in range(self.ensemble):
            view = dihedral(x, k)
            if self.device.type == "cpu" and k:
                view = view.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
                y = y + undo_dihedral(self.model.restore(view, prior).float(), k)
        return (y / self.ensemble).clamp(0, 1)[..., :h, :w]

    needs_kernel = False

    @torch.no_grad()
    def restore(self, rgb: np.ndarray, kernel: np.ndarray | None = None, progress=None) -> np.ndarray:
        """``kernel`` is accepted for a common interface with the classical methods and ignored (the network is blind).
        ``progress(done, total)`` is called after each tile, or for a diffusion model after each sampling step
        (:meth:`tiles` says how many tiles there will be)."""
        if self.generative:
            return self.sample(rgb, self.seed, progress=progress)[0]
        # a (1, 3, H, W) view of the (H, W, 3) photo: channels-last already, as the network wants it, no copy
        x = torch.from_numpy(np.asarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        if self.tile and max(x.shape[-2:]) > self.tile:
            prior = self.model.image_prior(x.to(self.device), self.tile) if self.prior == "image" else None
            # on a CPU, one tile per core with one thread each: 12 % faster than all threads on one tile at a time
            workers = min(cpu_cores(), self.tiles(x.shape[-2:])) if self.device.type == "cpu" else 1
            with intra_op_threads(1) if workers > 1 else contextlib.nullcontext():
                y = run_tiled(lambda t: self._run(t, prior), x, self.tile, self.overlap, progress=progress, workers=workers)
        else:
            y = self._run(x)
            if progress:
                progress(1, 1)
        return tensor_image(y)

    @torch.no_grad()
    def sample(
        self, rgb: np.ndarray, seed: int, kernels: bool = False, steps: int | None = None, progress=None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """A diffusion model's result for ``seed`` with ``steps`` sampling steps (None: the restorer's), (H, W, 3)
        in [0, 1], and with ``kernels`` a picture of the blur kernels the model predicted (the same size;
        for the models that declare ``predicts_kernels``). ``progress(done, total)`` after every step."""
        x = image_tensor(rgb).to(self.device)
        steps = steps or self.steps or self.model.default_steps
        callback = (lambda info: progress(info["step"], info["steps"])) if progress else None
        generator = torch.Generator().manual_seed(seed)
        out = self.model.sample(x, steps, generator, self.tile, callback, kernels=kernels, **self.anchoring)
        if not kernels:
            return tensor_image(out), None
        image, picture = out
        return tensor_image(image), tensor_image(picture)

    def draws(self, rgb: np.ndarray, seed: int, count: int, steps: int | None = None, progress=None, kernels: bool = False):
        """:meth:`sample` for seeds ``seed`` .. ``seed + count - 1`` in turn, yielding (image, kernel picture): the
        picture for the first draw only (with ``kernels``), else None. ``progress(done, total)`` counts the
        sampling steps of all the draws together."""
        for k in range(count):
            report = (lambda done, total, k=k: progress(k * total + done, count * total)) if progress else None
            yield self.sample(rgb, seed + k, kernels=kernels and k == 0, steps=steps, progress=report)


#: the self-ensemble's pass counts: the first 1, 2, 4 or all 8 of :func:`dihedral`'s views
ENSEMBLES = (1, 2, 4, 8)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """View ``k`` (0-7) of the 8 symmetries of the square of a (..., H, W) tensor: transposed if bit 2 of ``k``
    is set, then flipped upside down if bit 1, then left to right if bit 0 (0: unchanged, 1: mirrored, so two
    passes average the photo and its mirror image). :func:`undo_dihedral` turns it back."""
    if k & 4:
        x = x.transpose(-1, -2)
    if k & 2:
        x = x.flip(-2)
    return x.flip(-1) if k & 1 else x


def undo_dihedral(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`dihedral`: ``undo_dihedral(dihedral(x, k), k) == x``."""
    if k & 1:
        y = y.flip(-1)
    if k & 2:
        y = y.flip(-2)
    return y.transpose(-1, -2) if k & 4 else y


def check_anchoring(model, strength: float | None, start: str | None) -> dict:
    """The ``strength``/``start`` keywords for ``model.sample`` (empty when neither is asked for), checked against the
    model's declarations; ValueError in one line otherwise."""
    asked = {k: v for k, v in (("strength", strength), ("start", start)) if v is not None}
    if not asked:
        return {}
    if not model.generative:
        raise ValueError("strength and start are options of diffusion models; this model is deterministic")
    if not model.anchors:
        raise ValueError(f"{type(model).__name__} always samples from pure noise: it takes no strength or start")
    if strength is not None and not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1] (1: from pure noise), got {strength:g}")
    if start is not None and start not in model.anchors:
        raise ValueError(f"start must be one of {', '.join(model.anchors)} for this model, got {start!r}")
    return asked


#: the standard deviation that an uncertainty picture shows white (:func:`uncertainty_picture`)
UNCERTAINTY_WHITE = 0.1


class RunningStats:
    """Per-pixel mean and standard deviation of images added one at a time (Welford's method, float64), so K
    draws of a diffusion model never need to be held together."""

    def __init__(self):
        self.count, self._mean, self._m2 = 0, None, None

    def add(self, image: np.ndarray) -> None:
        x = np.asarray(image, dtype=np.float64)
        self.count += 1
        if self._mean is None:
            self._mean, self._m2 = x.copy(), np.zeros_like(x)
            return
        delta = x - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (x - self._mean)

    @property
    def mean(self) -> np.ndarray:
        """The per-pixel mean, float32, the images' shape."""
        return self._mean.astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        """The per-pixel standard deviation (divided by K - 1; zeros for one image), float32."""
        return np.sqrt(self._m2 / max(1, self.count - 1)).astype(np.float32)


def uncertainty_picture(std: np.ndarray) -> np.ndarray:
    """A grey picture of per-pixel standard deviations ``std`` (H, W, 3) of images in [0, 1]: the root mean square
    over the colour channels, linear, black = 0 and white = :data:`UNCERTAINTY_WHITE` (0.1, a tenth of the
    full range) or more; (H, W, 3) float32 in [0, 1]."""
    rms = np.sqrt(np.mean(np.square(std, dtype=np.float64), axis=2))
    grey = np.clip(rms / UNCERTAINTY_WHITE, 0, 1).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=2)


def default_tile(device: torch.device, generative: bool = False) -> int:
    """The largest tile side for ``device``. On a CPU, per-pixel time grows with the tile once its
    activations leave the caches (bf16 NAFNet, 2 threads: 1.08 s/MP at 448 px, 1.28 at 640, about 2x
    at 1024), while every tile border costs quality (the network pools over its whole input: on
    ``val_uniform``, 640x480 photos, whole images 27.59 dB, 512-px tiles 27.56, 448-px tiles 27.43):
    640 keeps such photos whole at near the best speed. A GPU takes larger tiles. Diffusion models
    tile their latent by 512 image pixels (64 latent pixels)."""
    if generative:
        return 512
    return 1024 if device.type == "cuda" else 640


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float32 -> (1, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]


def tensor_image(y: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) -> (H, W, 3) float32 in [0, 1] on the CPU."""
    return y[0].float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()  # contiguous when y is channels-last


def make_restorer(
    name: str | Path | None = None,
    device: str = "auto",
    tile: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    sd: str | None = None,
    precision: str = "auto",
    strength: float | None = None,
    start: str | None = None,
    ensemble: int = 1,
):
    """A registered network, a model file, or a classical method (``identity``, ``wiener-oracle``, ``rl-oracle``),
    all with ``restore(rgb, kernel=None)`` and a ``needs_kernel`` flag. ``NAME@...`` names a diffusion model
    with its sampling settings, or a regression model with its self-ensemble (:func:`split_sampling`: a benchmark
    row per setting, ``deblurdiff-small@5``, ``nafnet-real-world@x8``)."""
    from unblur.baselines import ClassicalRestorer
    from unblur.zoo import CLASSICAL

    if name is not None and str(name) in CLASSICAL:
        return ClassicalRestorer(str(name))
    if name is not None:
        name, settings = split_sampling(name)
        steps = settings.get("steps", steps)
        strength = settings.get("strength", strength)
        start = settings.get("start", start)
        ensemble = settings.get("ensemble", ensemble)
    return Restorer(
        name,
        device=device,
        tile=tile,
        steps=steps,
        seed=seed,
        sd=sd,
        precision=precision,
        strength=strength,
        start=start,
        ensemble=ensemble,
    )


#: what may follow ``@`` in a model name: steps, ``s`` and a strength, ``-`` and a start (:func:`split_sampling`);
#: or, for a regression model, ``x`` and its self-ensemble's pass count
SAMPLING_SUFFIX = re.compile(r"(?P<steps>\d*)(?:s(?P<strength>\d*\.?\d+))?(?:-(?P<start>[a-z]+))?|x(?P<ensemble>\d+)")


def split_sampling(name: str | Path) -> tuple[str | Path, dict]:
    """A diffusion model's name with its sampling settings after ``@``: ``NAME@N`` (N sampling steps),
    ``NAME@NsS`` (and strength S: anchored sampling), ``NAME@NsS-START`` (from START, e.g. ``zs`` or ``blurred``);
    each part may be left out (``NAME@s0.3``). ``"deblurdiff-small@10s0.3-blurred"`` -> ``("deblurdiff-small",
    {"steps": 10, "strength": 0.3, "start": "blurred"})``. ``NAME@xK``: a regression model's self-ensemble of K
    passes (``{"ensemble": K}``). Any other name (or an existing file) -> ``(name, {})``."""
    if "@" not in str(name) or Path(name).exists():
        return name, {}
    base, _, suffix = str(name).rpartition("@")
    found = SAMPLING_SUFFIX.fullmatch(suffix)
    if not suffix or not found:
        raise ValueError(
            f"'{name}': after @ come sampling steps, s and a strength, - and a start (e.g. {base}@10s0.3-zs), "
            f"or x and a self-ensemble's passes ({base}@x8)"
        )
    settings = {k: v for k, v in found.groupdict().items() if v}
    if "steps" in settings:
        settings["steps"] = int(settings["steps"])
    if "strength" in settings:
        settings["strength"] = float(settings["strength"])
    if "ensemble" in settings:
        settings["ensemble"] = int(settings["ensemble"])
    return base, settings

"""Deblurring whole photos with a trained model: load once, then restore image after image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unblur.tiling import run_tiled


class Restorer:
    """A loaded model ready for photos.

    ``restore(rgb)`` takes float32 (H, W, 3) in [0, 1] and returns the same shape.
    ``tile`` bounds memory: images larger than ``tile`` x ``tile`` are processed in
    overlapping tiles (0 = whole image at once).

    Diffusion models (those with a ``sample`` method: DeblurDiff, BD-Diff) draw their result from noise:
    ``steps`` sampling steps (None: the model's default) from seed ``seed``; they tile in latent
    space themselves, so one coherent sample covers the whole image (:meth:`sample`).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        tile: int = 512,
        overlap: int = 48,
        prior: str = "tile",
        steps: int | None = None,
        seed: int = 0,
        sd: str | None = None,
    ):
        from unblur.nn import generative
        from unblur.train.loop import pick_device
        from unblur.zoo import load_model

        self.device = pick_device(device)
        self.model, self.meta = load_model(model, self.device, sd=sd)
        self.tile, self.overlap = tile, overlap
        # models with a global prior (BlurDM): computed per tile, or once per image and shared by its tiles
        if prior not in ("tile", "image"):
            raise ValueError(f"prior must be 'tile' or 'image', got {prior!r}")
        self.prior = prior if hasattr(self.model, "image_prior") else "tile"
        self.generative = generative(self.meta["arch"])
        if (steps is not None or seed) and not self.generative:
            raise ValueError("steps and seed are options of diffusion models; this model is deterministic")
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        self.steps, self.seed = steps, seed

    @torch.no_grad()
    def _run(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < 16:  # reflection padding inside the network needs a few pixels: extend tiny images first
            x = F.pad(x, (0, max(0, 16 - w), 0, max(0, 16 - h)), mode="replicate")
        return self.model(x.to(self.device), **kwargs).clamp(0, 1)[..., :h, :w]

    needs_kernel = False

    @torch.no_grad()
    def restore(self, rgb: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
        """``kernel`` is accepted for a common interface with the classical methods and ignored (the network is blind)."""
        if self.generative:
            return self.sample(rgb, self.seed)[0]
        x = image_tensor(rgb)
        if self.tile and max(x.shape[-2:]) > self.tile:
            if self.prior == "image":
                z = self.model.image_prior(x.to(self.device), self.tile)
                y = run_tiled(lambda t: self._run(t, prior=z), x, self.tile, self.overlap)
            else:
                y = run_tiled(self._run, x, self.tile, self.overlap)
        else:
            y = self._run(x)
        return tensor_image(y)

    @torch.no_grad()
    def sample(
        self, rgb: np.ndarray, seed: int, kernels: bool = False, steps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """A diffusion model's result for ``seed`` with ``steps`` sampling steps (None: the restorer's), (H, W, 3)
        in [0, 1], and with ``kernels`` a picture of the kernels its LKPN predicted at the last step
        (:func:`unblur.methods.deblurdiff.kernel_map`), the same size."""
        from unblur.methods.deblurdiff import kernel_map

        x = image_tensor(rgb).to(self.device)
        out = self.model(x, steps=steps or self.steps, seed=seed, tile=self.tile, return_kernels=kernels)
        if not kernels:
            return tensor_image(out), None
        image, k = out
        picture = kernel_map(k.cpu(), self.model.kernel_size)
        h, w = rgb.shape[:2]
        picture = np.repeat(np.repeat(picture, self.model.factor, 0), self.model.factor, 1)[:h, :w]  # one block per latent pixel
        return tensor_image(image), picture


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float32 -> (1, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]


def tensor_image(y: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) -> (H, W, 3) float32 in [0, 1] on the CPU."""
    return y[0].float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def make_restorer(
    name: str | Path | None = None,
    device: str = "auto",
    tile: int = 512,
    steps: int | None = None,
    seed: int = 0,
    sd: str | None = None,
):
    """A registered network, a model file, or a classical method (``identity``, ``wiener-oracle``, ``rl-oracle``),
    all with ``restore(rgb, kernel=None)`` and a ``needs_kernel`` flag. ``NAME@N`` names a diffusion
    model sampled with N steps (a benchmark row per step count: ``deblurdiff-small@5``)."""
    from unblur.baselines import ClassicalRestorer
    from unblur.zoo import CLASSICAL

    if name is not None and str(name) in CLASSICAL:
        return ClassicalRestorer(str(name))
    if name is not None:
        name, steps_in_name = split_steps(name)
        steps = steps_in_name or steps
    return Restorer(name, device=device, tile=tile, steps=steps, seed=seed, sd=sd)


def split_steps(name: str | Path) -> tuple[str | Path, int | None]:
    """``"deblurdiff-small@5"`` -> ``("deblurdiff-small", 5)``: a diffusion model with its number of sampling
    steps (one benchmark row per step count); any other name (or an existing file) -> ``(name, None)``."""
    if "@" not in str(name) or Path(name).exists():
        return name, None
    base, _, count = str(name).rpartition("@")
    if not count.isdigit():
        raise ValueError(f"'{name}': the part after @ must be a number of sampling steps")
    return base, int(count)

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
    """

    def __init__(
        self, model: str | Path | None = None, device: str = "auto", tile: int = 512, overlap: int = 48, prior: str = "tile"
    ):
        from unblur.train.loop import pick_device
        from unblur.zoo import load_model

        self.device = pick_device(device)
        self.model, self.meta = load_model(model, self.device)
        self.tile, self.overlap = tile, overlap
        # models with a global prior (BlurDM): computed per tile, or once per image and shared by its tiles
        if prior not in ("tile", "image"):
            raise ValueError(f"prior must be 'tile' or 'image', got {prior!r}")
        self.prior = prior if hasattr(self.model, "image_prior") else "tile"

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
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]
        if self.tile and max(x.shape[-2:]) > self.tile:
            if self.prior == "image":
                z = self.model.image_prior(x.to(self.device), self.tile)
                y = run_tiled(lambda t: self._run(t, prior=z), x, self.tile, self.overlap)
            else:
                y = run_tiled(self._run, x, self.tile, self.overlap)
        else:
            y = self._run(x)
        return y[0].float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def make_restorer(name: str | Path | None = None, device: str = "auto", tile: int = 512):
    """A registered network, a model file, or a classical method (``identity``, ``wiener-oracle``, ``rl-oracle``),
    all with ``restore(rgb, kernel=None)`` and a ``needs_kernel`` flag."""
    from unblur.baselines import ClassicalRestorer
    from unblur.zoo import CLASSICAL

    if name is not None and str(name) in CLASSICAL:
        return ClassicalRestorer(str(name))
    return Restorer(name, device=device, tile=tile)

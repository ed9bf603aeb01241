"""LPIPS (Zhang et al., CVPR 2018), AlexNet variant, from local weight files only.

No wheel ships the weights and nothing is downloaded, so the metric is available
only when both files are on disk:

- the LPIPS linear layers (the authors' ``alex.pth``, keys ``lin0.model.1.weight`` ...
  ``lin4.model.1.weight``): ``UNBLUR_LPIPS_WEIGHTS``;
- the ImageNet AlexNet backbone (torchvision's ``alexnet-owt-7be5be79.pth``, keys
  ``features.N.weight/bias``): ``UNBLUR_ALEXNET_WEIGHTS``, or the standard torch hub cache
  (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``).

Otherwise :func:`load_lpips` raises :class:`LPIPSUnavailable` whose message says which
file is missing, and reports print "n/a (reason)", never a number.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
CHANNELS = (64, 192, 384, 256, 256)


class LPIPSUnavailable(RuntimeError):
    """The weights are not on this machine; ``str(err)`` says which and where we looked."""


class AlexFeatures(nn.Module):
    """AlexNet's convolutional part, returning the five ReLU outputs LPIPS compares."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x):
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (1, 4, 7, 9, 11):
                taps.append(x)
        return taps


class LPIPS(nn.Module):
    """Distance between (B, 3, H, W) images in [0, 1]; returns (B,). 0 for identical images."""

    def __init__(self):
        super().__init__()
        self.net = AlexFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self.net(((a * 2 - 1) - self.shift) / self.scale)
        fb = self.net(((b * 2 - 1) - self.shift) / self.scale)
        total = 0
        for x, y, lin in zip(fa, fb, self.lins):
            x = x / (x.norm(dim=1, keepdim=True) + 1e-10)  # unit length along channels, as the paper
            y = y / (y.norm(dim=1, keepdim=True) + 1e-10)
            total = total + lin((x - y) ** 2).mean(dim=(1, 2, 3))
        return total


def _alexnet_path() -> Path:
    if os.environ.get("UNBLUR_ALEXNET_WEIGHTS"):
        return Path(os.environ["UNBLUR_ALEXNET_WEIGHTS"])
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    return home / "hub" / "checkpoints" / ALEXNET_FILE


def load_lpips(device: str = "cpu") -> LPIPS:
    lin_path = os.environ.get("UNBLUR_LPIPS_WEIGHTS")
    if not lin_path:
        raise LPIPSUnavailable("no LPIPS weights (set UNBLUR_LPIPS_WEIGHTS to the authors' alex.pth)")
    lin_path, alex_path = Path(lin_path), _alexnet_path()
    for path in (lin_path, alex_path):
        if not path.is_file():
            raise LPIPSUnavailable(f"weights file not found: {path}")
    model = LPIPS()
    alex = torch.load(alex_path, map_location="cpu", weights_only=True)
    model.net.load_state_dict({k: v for k, v in alex.items() if k.startswith("features.")})
    lins = torch.load(lin_path, map_location="cpu", weights_only=True)
    model.lins.load_state_dict({k.replace("lin", "", 1).replace(".model.1", ""): v for k, v in lins.items()})
    return model.to(device).eval()


@torch.no_grad()
def lpips(model: LPIPS, pred: np.ndarray, target: np.ndarray) -> float:
    """LPIPS of two (H, W, 3) float images in [0, 1]."""
    dev = next(model.parameters()).device
    a = torch.from_numpy(np.ascontiguousarray(pred.transpose(2, 0, 1)))[None].float().to(dev)
    b = torch.from_numpy(np.ascontiguousarray(target.transpose(2, 0, 1)))[None].float().to(dev)
    return float(model(a, b)[0])


__all__ = ["LPIPS", "LPIPSUnavailable", "load_lpips", "lpips"]

"""A deblurring backbone as a method: the adapter between :mod:`unblur.nn` and the method contract."""

from __future__ import annotations

import torch
from torch import nn

from unblur.methods.base import Method


class Regression(Method):
    """Trains ``net`` (a backbone of :mod:`unblur.nn`) on the image loss between its output and the sharp
    image (summed over every scale of a multi-scale backbone when ``loss.multiscale`` is on) and restores
    in one pass.

    Model files and checkpoints hold the backbone's own weights and arguments: ``state_dict``,
    ``load_state_dict`` and ``config`` are the backbone's, so files written before this adapter existed
    load unchanged and a backbone file is the same whether a method or the backbone wrote it.
    """

    low_precision = "weights"  # a plain network: bf16/fp16 weights, no casts at every layer

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def config(self) -> dict:
        return self.net.config

    def state_dict(self, *args, **kwargs):
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)

    def training_loss(self, batch: dict[str, torch.Tensor], image_loss) -> tuple[torch.Tensor, dict[str, float]]:
        blurred = batch["blurred"]
        out = self.net(blurred, all_scales=True) if self.net.multiscale and image_loss.multiscale else self.net(blurred)
        return image_loss(out, batch["sharp"]), {}

    def restore(self, blurred: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(blurred)

"""Network building blocks and deblurring backbones.

``build(arch, config)`` makes a backbone from its name and constructor arguments; a model file
stores exactly that pair (:mod:`unblur.modelfile`). To train or run one, :mod:`unblur.methods`
wraps it in the method contract (:class:`unblur.methods.regression.Regression`).

The backbone contract, which ``tests/test_backbones.py`` checks for every entry of :data:`BACKBONES`:

* ``forward(x, prior=None)`` maps (B, 3, H, W) in [0, 1] to the same shape for any H, W;
  ``prior`` (B, prior_dim) modulates the decoder (BlurDM's fusion, built with ``prior_dim > 0``);
* ``multiscale`` (class attribute): True when ``forward(x, prior, all_scales=True)`` returns every
  output scale, finest first (MIMO-UNet+), for the multi-scale loss;
* ``__init__`` is decorated with :func:`unblur.nn.configurable.register_to_config` (``.config``);
* its module defines ``PUBLISHED`` (the paper's size), ``TINY`` (for tests) and ``PAPER`` (the
  paper's parameter count and MACs at 256x256).
"""

from __future__ import annotations

import importlib

# name -> module under unblur.nn and class; imported on first use (importing unblur stays fast)
BACKBONES = {
    "nafnet": ("nafnet", "NAFNet"),
    "mimo-unet-plus": ("mimounet", "MIMOUNetPlus"),
    "stripformer": ("stripformer", "Stripformer"),
    "fftformer": ("fftformer", "FFTformer"),
    "loformer": ("loformer", "LoFormer"),
}


def backbone_module(arch: str):
    if arch not in BACKBONES:
        raise ValueError(f"unknown backbone '{arch}' (known: {', '.join(sorted(BACKBONES))})")
    return importlib.import_module(f"unblur.nn.{BACKBONES[arch][0]}")


def backbone_class(arch: str) -> type:
    """The class of a backbone, by name (nothing is built)."""
    return getattr(backbone_module(arch), BACKBONES[arch][1])


def build(arch: str, config: dict):
    """A backbone by name, from its constructor arguments."""
    return backbone_class(arch)(**config)


def cost(model, size: int = 256) -> tuple[float, float]:
    """(parameters in millions, GMACs for one size x size RGB image), MACs counted by PyTorch's
    FlopCounterMode (convolutions and matrix products; FFTs and element-wise work not counted).
    ``model(x)`` must restore x: a backbone, or a method (whose ``forward`` restores)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters()) / 1e6
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, size, size, device=next(model.parameters()).device))
    return params, counter.get_total_flops() / 2e9

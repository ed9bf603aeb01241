"""Network building blocks and deblurring backbones.

``build(arch, config)`` makes a backbone from its name and constructor arguments;
a model file stores exactly that pair, so any checkpoint can be rebuilt.

Every backbone maps (B, 3, H, W) in [0, 1] to the same shape for any H, W, takes an
optional ``prior`` (B, prior_dim) that modulates its decoder (BlurDM's fusion, built
with ``prior_dim > 0``), stores its constructor arguments in ``.config``, and its
module defines ``PUBLISHED`` (the paper's size), ``TINY`` (for tests) and ``PAPER``
(the paper's parameter count and MACs at 256x256).
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


# whole methods that wrap a backbone, stored in model files like backbones: name -> module path and class
METHODS = {
    "blurdm": ("unblur.methods.blurdm", "BlurDM"),
    "small-vae": ("unblur.methods.small_sd", "SmallVAE"),
    "deblurdiff": ("unblur.methods.deblurdiff", "DeblurDiffSD"),
    "deblurdiff-small": ("unblur.methods.deblurdiff", "DeblurDiffSmall"),
    "bd-diff-small": ("unblur.methods.bddiff", "BDDiff"),
}


def backbone_module(arch: str):
    if arch not in BACKBONES:
        raise ValueError(f"unknown backbone '{arch}' (known: {', '.join(sorted(BACKBONES))})")
    return importlib.import_module(f"unblur.nn.{BACKBONES[arch][0]}")


def architecture(arch: str) -> type:
    """The class of a backbone or a method, by name (nothing is built)."""
    if arch in METHODS:
        module, cls = METHODS[arch]
        return getattr(importlib.import_module(module), cls)
    if arch not in BACKBONES:
        raise ValueError(f"unknown architecture '{arch}' (known: {', '.join(sorted([*BACKBONES, *METHODS]))})")
    return getattr(backbone_module(arch), BACKBONES[arch][1])


def generative(arch: str) -> bool:
    """Whether ``arch`` draws its results from noise (a diffusion method with ``sample``): it takes sampling
    steps and a seed, and the same seed gives the same result."""
    return hasattr(architecture(arch), "sample")


def build(arch: str, config: dict):
    """A backbone or a method by name, from its constructor arguments."""
    return architecture(arch)(**config)


def cost(model, size: int = 256) -> tuple[float, float]:
    """(parameters in millions, GMACs for one size x size RGB image), MACs counted by PyTorch's
    FlopCounterMode (convolutions and matrix products; FFTs and element-wise work not counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters()) / 1e6
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, size, size, device=next(model.parameters()).device))
    return params, counter.get_total_flops() / 2e9

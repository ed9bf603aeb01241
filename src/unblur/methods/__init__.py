"""The methods: what the training engine trains and the Restorer runs, by name.

A model file names its architecture (``arch``); :func:`build` makes the method from that name and the
recorded constructor arguments. Every name is a :class:`~unblur.methods.base.Method`: the published
methods (BlurDM; DeblurDiff on Stable Diffusion or on our small latent diffusion model; BD-Diff), the
VAE stage of that small model, and every backbone of :data:`unblur.nn.BACKBONES` through the
:class:`~unblur.methods.regression.Regression` adapter.

Modules are imported on first use, so importing :mod:`unblur.methods` stays cheap and a method's
optional dependencies (diffusers) are needed only when it is built.
"""

from __future__ import annotations

import importlib

from unblur.nn import BACKBONES

#: name -> "module:Class" (imported on first use) or a class (added by :func:`register_method`)
METHODS: dict[str, str | type] = {
    "blurdm": "unblur.methods.blurdm:BlurDM",
    "small-vae": "unblur.methods.small_sd:SmallVAE",
    "small-prior": "unblur.methods.small_sd:SmallPrior",
    "deblurdiff": "unblur.methods.deblurdiff:DeblurDiffSD",
    "deblurdiff-small": "unblur.methods.deblurdiff:DeblurDiffSmall",
    "bd-diff-small": "unblur.methods.bddiff:BDDiff",
}


def register_method(name: str, cls: type | str) -> None:
    """Make ``cls`` (a :class:`~unblur.methods.base.Method` subclass whose ``__init__`` is decorated with
    :func:`~unblur.nn.configurable.register_to_config`, or its ``"module:Class"`` path) trainable and loadable
    as ``arch: name``: configs, model files and ``--model`` then accept it like a built-in method."""
    if name in BACKBONES or name in METHODS:
        raise ValueError(f"'{name}' is already registered")
    METHODS[name] = cls


def names() -> list[str]:
    """Every registered architecture: the backbones, then the methods."""
    return [*BACKBONES, *METHODS]


def method_class(arch: str) -> type:
    """The class a model of ``arch`` is (:class:`Regression` for a backbone); nothing is built, so a caller can
    read its declarations (``generative`` ...) from a model file's metadata alone."""
    if arch in BACKBONES:
        from unblur.methods.regression import Regression

        return Regression
    if arch not in METHODS:
        raise ValueError(f"unknown architecture '{arch}' (known: {', '.join(sorted(names()))})")
    entry = METHODS[arch]
    if isinstance(entry, str):
        module, _, cls = entry.partition(":")
        entry = getattr(importlib.import_module(module), cls)
    return entry


def build(arch: str, config: dict):
    """The method ``arch`` built from its constructor arguments ``config`` (a backbone's, for a backbone)."""
    if arch in BACKBONES:
        from unblur.methods.regression import Regression
        from unblur.nn import build as build_backbone

        return Regression(build_backbone(arch, config))
    return method_class(arch)(**config)

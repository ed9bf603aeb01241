"""Network building blocks and deblurring backbones.

``build(arch, config)`` makes a backbone from its name and constructor arguments;
a model file stores exactly that pair, so any checkpoint can be rebuilt.
"""

from __future__ import annotations


def architectures() -> dict:
    from unblur.nn.nafnet import NAFNet

    return {"nafnet": NAFNet}


def build(arch: str, config: dict):
    archs = architectures()
    if arch not in archs:
        raise ValueError(f"unknown architecture '{arch}' (known: {', '.join(sorted(archs))})")
    return archs[arch](**config)

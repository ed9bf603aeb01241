"""Model files: one safetensors file per trained model, below both training (which writes them) and
inference (which reads them).

The file's metadata ``unblur`` holds ``{"arch": name, "config": {...}, ...}``: the registered
architecture (:mod:`unblur.methods`) and its constructor's arguments (recorded by
:func:`unblur.nn.configurable.register_to_config`), plus whatever the writer adds (``step``,
``val_psnr``). That is all it takes to rebuild the network, so ``--model path.safetensors`` works
for anything we train; weights are stored as the model's ``state_dict`` (fp16 on request), always
loaded back as fp32.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from unblur.atomic import atomic_write


def save_model_file(path: str | Path, model: torch.nn.Module, arch: str, info: dict | None = None, half: bool = False) -> Path:
    """Write ``model`` (a method of :mod:`unblur.methods`, registered as ``arch``) atomically.
    ``half`` stores fp16 (half the size; loaded back as fp32)."""
    path = Path(path)
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    meta = {"unblur": json.dumps({"arch": arch, "config": model.config, **(info or {})})}
    with atomic_write(path) as tmp:
        save_file(state, tmp, metadata=meta)
    return path


def weights_digest(*modules: torch.nn.Module) -> str:
    """A short hex digest of the modules' weights as fp16 (so the same weights give it from an fp16 or fp32 file):
    the identity of frozen parts a model file names instead of holding (16 hex digits of SHA-256). -0 counts as
    +0: they are equal weights (an EMA update of a frozen weight turns one into the other)."""
    import hashlib

    h = hashlib.sha256()
    for module in modules:
        for name, value in sorted(module.state_dict().items()):
            value = value.detach().cpu()
            if value.is_floating_point():
                value = value.half() + 0.0  # + 0.0 turns -0 into +0
            h.update(name.encode())
            h.update(value.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def read_model_meta(path: str | Path) -> dict:
    """A model file's metadata (``arch``, ``config`` and the writer's extras), without reading its weights."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "unblur" not in meta:
        raise ValueError(f"{path}: not an unblur model file (no 'unblur' metadata)")
    return json.loads(meta["unblur"])


def load_model_file(path: str | Path, device: str | torch.device = "cpu", sd: str | None = None) -> tuple[torch.nn.Module, dict]:
    """The method a model file describes, its weights loaded (as fp32), in eval mode on ``device``, and the
    file's metadata. ``sd``: this machine's Stable Diffusion folder, for models whose frozen parts live
    there (``arch: deblurdiff``)."""
    from unblur.methods import build, method_class

    meta = read_model_meta(path)
    # arguments added to the method after this file was written: the values it was trained with
    meta["config"] = {**method_class(meta["arch"]).file_defaults, **meta["config"]}
    if sd is not None:
        if "sd" not in meta["config"]:
            raise ValueError(f"--sd is for models built on a Stable Diffusion folder; {Path(path).name} ({meta['arch']}) is not")
        meta["config"] = {**meta["config"], "sd": str(sd)}
    model = build(meta["arch"], meta["config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.to(device).eval(), meta

"""Model files and training checkpoints, always written atomically.

A *model file* is one safetensors file whose metadata says how to rebuild the
network (``{"arch": ..., "config": {...}}``), so ``--model path.safetensors``
works for anything we train. A *checkpoint* is a folder
``ckpt-<step>/{model,ema}.safetensors + state.pt`` written under a temporary
name and renamed only when complete: a run killed mid-write leaves the previous
checkpoint intact and ``--resume auto`` ignores the partial one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from unblur import nn as unets
from unblur.atomic import atomic_write


def save_model_file(path: str | Path, model: torch.nn.Module, arch: str, info: dict | None = None, half: bool = False) -> Path:
    """Write a self-describing safetensors model file. ``half`` stores fp16 (half the size; loaded back as fp32)."""
    path = Path(path)
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    meta = {"unblur": json.dumps({"arch": arch, "config": model.config, **(info or {})})}
    with atomic_write(path) as tmp:
        save_file(state, tmp, metadata=meta)
    return path


def read_model_meta(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "unblur" not in meta:
        raise ValueError(f"{path}: not an unblur model file (no 'unblur' metadata)")
    return json.loads(meta["unblur"])


def load_model_file(path: str | Path, device: str | torch.device = "cpu", sd: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network a model file describes and load its weights (as fp32). ``sd``: this machine's
    Stable Diffusion folder, for models whose frozen parts live there (``arch: deblurdiff``)."""
    meta = read_model_meta(path)
    if sd is not None:
        if "sd" not in meta["config"]:
            raise ValueError(f"--sd is for models built on a Stable Diffusion folder; {Path(path).name} ({meta['arch']}) is not")
        meta["config"] = {**meta["config"], "sd": str(sd)}
    model = unets.build(meta["arch"], meta["config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def save_checkpoint(run_dir: Path, step: int, model, ema, optimizer, scheduler, extra: dict, keep: int = 2) -> Path:
    """Write ``run_dir/checkpoints/ckpt-<step>`` atomically and keep only the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"ckpt-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
        torch.save(
            {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **extra}, tmp / "state.pt"
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in sorted(root.glob("ckpt-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    done = sorted(p for p in (Path(run_dir) / "checkpoints").glob("ckpt-*") if (p / "state.pt").exists())
    return done[-1] if done else None


def load_checkpoint(ckpt: Path, model, ema, optimizer, scheduler) -> dict:
    """Restore everything a checkpoint holds; returns its state dict (``step`` and extras)."""
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    ema.load_state_dict(load_file(str(ckpt / "ema.safetensors")))
    state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state

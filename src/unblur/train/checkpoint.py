"""Training checkpoints, always written atomically (model files, which inference reads too, are
:mod:`unblur.modelfile`).

A *checkpoint* is a folder ``ckpt-<step>/{model,ema}.safetensors + state.pt`` written under a
temporary name and renamed only when complete: a run killed mid-write leaves the previous
checkpoint intact and ``--resume auto`` ignores the partial one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file



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

"""Multi-stage training (BlurDM's three stages) as one resumable command.

Stage k's config is the base config merged with ``stages[k - 1]``; it trains into
``RUN_DIR/stage-<k>`` starting from stage k-1's ``last.safetensors``. A finished stage
(its last model file has reached its step count) is skipped, an interrupted one
resumes from its newest checkpoint, so ``--resume auto`` continues wherever the
sequence stopped. The final model is copied to ``RUN_DIR/last.safetensors``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from unblur.atomic import atomic_write
from unblur.modelfile import read_model_meta
from unblur.train.config import merge
from unblur.train.loop import train


def stage_configs(cfg: dict) -> list[dict]:
    base = {k: v for k, v in cfg.items() if k != "stages"}
    return [{**merge(base, overrides), "stages": []} for overrides in cfg["stages"]]


def finished(run_dir: Path, steps: int) -> bool:
    last = run_dir / "last.safetensors"
    return last.exists() and read_model_meta(last).get("step") == steps


def train_stages(cfg: dict, run_dir: str | Path, resume: str | None = None, quiet: bool = False) -> list[dict]:
    """Run every stage in order; returns each stage's summary (None for stages already done)."""
    run_dir = Path(run_dir)
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    summaries, previous = [], cfg["train"]["init"]
    for k, stage_cfg in enumerate(stage_configs(cfg), start=1):
        out = run_dir / f"stage-{k}"
        if previous:
            stage_cfg["train"]["init"] = str(previous)
        if resume and finished(out, stage_cfg["optim"]["steps"]):
            summaries.append(None)
        else:
            if not quiet:
                print(f"stage {k} of {len(cfg['stages'])}")
            summaries.append(train(stage_cfg, out, resume="auto" if resume else None, quiet=quiet))
        previous = out / "last.safetensors"
    if main:
        with atomic_write(run_dir / "last.safetensors") as tmp:
            shutil.copyfile(previous, tmp)
    return summaries

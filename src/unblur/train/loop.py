"""The training loop, readable top to bottom: build, resume, step, validate, checkpoint."""

from __future__ import annotations

import copy
import csv
import math
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from unblur import nn as unets
from unblur.data.synthetic import SyntheticPairs, fixed_pairs, load_folder
from unblur.metrics import psnr_tensor
from unblur.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_model_file,
    save_checkpoint,
    save_model_file,
)
from unblur.train.losses import charbonnier, fft_l1


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def lr_factor(step: int, warmup: int, steps: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay from 1 to ``min_ratio`` at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.is_floating_point():
            e.lerp_(p, 1 - decay)
        else:
            e.copy_(p)


@torch.no_grad()
def validate(model: torch.nn.Module, blurred: torch.Tensor, sharp: torch.Tensor, device, chunk: int = 4) -> float:
    """Mean 8-bit RGB PSNR of ``model`` on a fixed validation batch."""
    model.eval()
    scores = []
    for i in range(0, len(blurred), chunk):
        out = model(blurred[i : i + chunk].to(device)).float().cpu()
        scores.append(psnr_tensor(out, sharp[i : i + chunk]))
    return float(torch.cat(scores).mean())


def worker_init(_):
    torch.set_num_threads(1)  # data workers share the cores with the training process


def train(cfg: dict, run_dir: str | Path, resume: str | None = None, quiet: bool = False, stop_at: int | None = None) -> dict:
    """Train the model ``cfg`` describes into ``run_dir``. Returns a summary (steps, losses, val PSNR, seconds).

    ``stop_at`` ends the run after that step with a checkpoint, as if interrupted
    there (the schedule still spans ``optim.steps``): train in chunks with ``--resume auto``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    tc, oc, dc = cfg["train"], cfg["optim"], cfg["data"]
    device = pick_device(tc["device"])
    torch.manual_seed(tc["seed"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    amp = tc["amp"] if tc["amp"] != "auto" else ("bf16" if device.type == "cuda" else "none")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    mcfg = {k: v for k, v in cfg["model"].items() if k != "arch"}
    model = unets.build(cfg["model"]["arch"], mcfg).to(device)
    if tc["init"]:
        init, meta = load_model_file(tc["init"])
        if meta["arch"] != cfg["model"]["arch"] or init.config != model.config:
            raise ValueError(f"train.init {tc['init']}: its model ({meta['arch']}, {init.config}) differs from the config's")
        model.load_state_dict(init.state_dict())
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=oc["lr"], betas=tuple(oc["betas"]), weight_decay=oc["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, oc["warmup"], oc["steps"], oc["min_lr"] / oc["lr"] if oc["lr"] else 1.0)
    )
    scaler = torch.amp.GradScaler(enabled=amp == "fp16")

    start, best = 0, -float("inf")
    ckpt = latest_checkpoint(run_dir) if resume == "auto" else (Path(resume) if resume else None)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, ema, optimizer, scheduler)
        start, best = state["step"], state.get("best", best)
        if not quiet:
            print(f"resumed from {ckpt} at step {start}")

    train_set = SyntheticPairs(load_folder(dc["train"]), dc["crop"], dc["batch"], tc["seed"], dc["preset"])
    val_images = load_folder(dc["val"])[: dc["val_images"]] if dc.get("val") else []
    val_blur, val_sharp = fixed_pairs(val_images, dc["val_crop"], seed=1234, preset=dc["preset"]) if val_images else (None, None)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=None,
        sampler=range(start, min(oc["steps"], stop_at or oc["steps"])),
        num_workers=dc["workers"],
        worker_init_fn=worker_init,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if dc["workers"] else None,
        persistent_workers=False,
    )
    log_path = run_dir / "log.csv"
    new_log = not log_path.exists() or start == 0
    log = open(log_path, "w" if new_log else "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "loss", "lr", "val_psnr", "seconds"])
    losses, history, t0 = [], [], time.time()
    bar = tqdm(total=oc["steps"], initial=start, disable=quiet, dynamic_ncols=True, desc="train")
    model.train()
    step = start
    for step, (blurred, sharp) in enumerate(loader, start=start):
        blurred, sharp = blurred.to(device, non_blocking=True), sharp.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            pred = model(blurred)
        pred = pred.float()
        loss = charbonnier(pred, sharp, cfg["loss"]["charbonnier_eps"])
        if cfg["loss"]["fft_weight"]:
            loss = loss + cfg["loss"]["fft_weight"] * fft_l1(pred, sharp)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if oc["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), oc["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        # EMA warm-up: early on average over fewer steps, or short runs would validate the random init.
        update_ema(ema, model, min(tc["ema"], (1 + step) / (10 + step)))
        losses.append(loss.item())
        history.append(losses[-1])
        bar.update(1)
        done = step + 1
        val = ""
        if val_blur is not None and (done % tc["val_every"] == 0 or done == oc["steps"]):
            val = validate(ema, val_blur, val_sharp, device)
            if val > best:
                best = val
                save_model_file(run_dir / "best.safetensors", ema, cfg["model"]["arch"], {"step": done, "val_psnr": val})
        if done % tc["log_every"] == 0 or val != "" or done == oc["steps"]:
            mean = sum(losses) / len(losses)
            writer.writerow(
                [
                    done,
                    f"{mean:.6f}",
                    f"{scheduler.get_last_lr()[0]:.3e}",
                    f"{val:.3f}" if val != "" else "",
                    f"{time.time() - t0:.1f}",
                ]
            )
            log.flush()
            bar.set_postfix(loss=f"{mean:.4f}", **({"val": f"{val:.2f}"} if val != "" else {}))
            losses = []
        if done % tc["ckpt_every"] == 0 or done in (oc["steps"], stop_at):
            save_checkpoint(run_dir, done, model, ema, optimizer, scheduler, {"best": best}, keep=tc["keep"])
            save_model_file(run_dir / "last.safetensors", ema, cfg["model"]["arch"], {"step": done})
    bar.close()
    log.close()
    return {
        "start": start,
        "steps": min(oc["steps"], stop_at or oc["steps"]),
        "losses": history,
        "best_val_psnr": best,
        "seconds": time.time() - t0,
    }

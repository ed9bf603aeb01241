"""Seconds per training step of a config's model on random tensors, for each way of running it.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/train_step_speed.py src/unblur/configs/nafnet-real-world-5.yaml \
        --variants fp32-nchw,fp32-nhwc,fp32-nhwc-b16,fp32-nhwc-compile

A variant is dash-separated words: ``fp32`` or ``bf16`` (autocast), ``nchw`` or ``nhwc`` (channels-last weights
and input), ``bN`` (batch N instead of the config's), ``compile`` (``torch.compile`` of the model). Each runs
``--steps`` steps of forward, the method's training loss, backward and an AdamW step on random (B, 3, crop, crop)
pairs; the first ``--warmup`` are left out of the mean, which is reported per ``data.batch`` samples (so
batches compare). Run it alone on its core: time comparisons need an otherwise idle machine.
"""

import argparse
import time

import torch

from unblur.losses import ImageLoss
from unblur.methods import build
from unblur.train.config import load_config


def one_variant(config: dict, variant: str, steps: int, warmup: int) -> tuple[float, float]:
    """(seconds of the first step, mean seconds per config batch after the warm-up) for ``variant``."""
    words = variant.split("-")
    batch = next((int(w[1:]) for w in words if w[0] == "b" and w[1:].isdigit()), config["data"]["batch"])
    model_args = {k: v for k, v in config["model"].items() if k != "arch"}
    torch.manual_seed(0)
    model = build(config["model"]["arch"], model_args).train()
    nhwc = "nhwc" in words
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
    loss_of = torch.compile(model.training_loss) if "compile" in words else model.training_loss
    image_loss = ImageLoss(config["loss"], torch.device("cpu"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    crop = config["data"]["crop"]
    times = []
    for _ in range(steps):
        blurred, sharp = torch.rand(batch, 3, crop, crop), torch.rand(batch, 3, crop, crop)
        if nhwc:
            blurred = blurred.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in words):
            loss, _ = loss_of({"blurred": blurred, "sharp": sharp}, image_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    per_batch = sum(times[warmup:]) / len(times[warmup:]) * config["data"]["batch"] / batch
    return times[0], per_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--variants", default="fp32-nchw,fp32-nhwc")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    config = load_config(args.config)
    print(f"{args.config}: {torch.get_num_threads()} thread(s), batch {config['data']['batch']} of {config['data']['crop']}²")
    for variant in args.variants.split(","):
        first, per_batch = one_variant(config, variant, args.steps, args.warmup)
        print(f"{variant:>24}: {per_batch:.2f} s per step of {config['data']['batch']} (first step {first:.1f} s)", flush=True)


if __name__ == "__main__":
    main()

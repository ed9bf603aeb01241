"""Training configs: nested dicts read from YAML, with ``key.sub=value`` overrides.

Every config starts from :data:`DEFAULTS`; a YAML file and then ``--set``
overrides are merged on top. Override values are parsed as YAML, so
``optim.lr=3e-4``, ``model.enc_blocks=[1,1,2,4]`` and ``train.device=cuda`` all work.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``3e-4`` as a float (YAML 1.1 insists on ``3.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


DEFAULTS: dict = {
    # arch names a backbone (unblur.nn.BACKBONES) or a method (unblur.methods.METHODS); the other keys are its
    # constructor's arguments
    "model": {"arch": "nafnet", "width": 16, "enc_blocks": [1, 1, 2, 6], "middle_blocks": 2, "dec_blocks": [1, 1, 1, 1]},
    "data": {
        # the data root: relative folders below (train, val, target) are read from it; null: $UNBLUR_DATA,
        # else the folder `shared` next to the repository (unblur.data.root)
        "root": None,
        "train": "photos/train",  # folder of sharp photos
        "val": "photos/val",  # folder of sharp photos for the fixed validation crops ("" for none)
        "preset": "uniform-kernel",  # blur preset (unblur.blur.synth.PRESETS) or a mixture "a+b"
        "crop": 128,  # training crop side, pixels
        # [lo, hi]: each crop's photo seen area-downscaled first, its long side drawn log-uniformly in [lo, hi]
        # pixels (never upscaled), as benchmarks and shared photos are; null: photos at their own resolution
        "photo_side": None,
        "batch": 8,  # per process (under torchrun the global batch is batch x processes)
        "workers": "auto",  # data-loader processes making pairs while the model trains; auto: the cores left per process
        "val_crop": 256,  # one centre crop of this side per validation photo
        "val_images": 24,  # the first N photos of data.val
        # folder of training pairs synthesised once (`unblur cache`), used instead of data.train + data.preset
        # (which then only make the validation crops); relative: below the repository's root folder, not the data
        # root (e.g. .data/cache-real-world, gitignored); null: synthesise every step's pairs on the fly
        "cache": None,
        "step_offset": 0,  # training step s uses batch s + step_offset (a later stage continues the data stream)
        # folder of blurred photos of a target domain, no sharp twins (BD-Diff's unpaired blur transfer): every
        # step also gets data.batch random data.crop crops of them, batch["target"] of the method's training loss;
        # null: none
        "target": None,
    },
    "optim": {
        "optimizer": "adamw",  # or adam
        "lr": 1.0e-3,  # peak learning rate, after the linear warm-up
        "min_lr": 1.0e-6,  # cosine decay ends here at the last step
        "weight_decay": 0.0,
        "betas": [0.9, 0.9],
        "warmup": 200,  # steps
        "steps": 10000,  # total optimizer steps (the schedule spans them)
        "grad_clip": 0.5,  # max global gradient norm (0: no clipping)
    },
    "loss": {
        "pixel": "charbonnier",  # or l1, or psnr (minus each image's PSNR in dB: the benchmarks' own average)
        "charbonnier_eps": 1.0e-3,  # sqrt(d^2 + eps^2)
        "fft_weight": 0.0,  # weight of the frequency loss (MIMO-UNet, BlurDM use 0.1)
        "fft": "2d-l1",  # 2-D FFT under L1 (MIMO-UNet) | height-charbonnier (1-D FFT along the height, BlurDM's authors)
        "clamp": False,  # clamp outputs to [0, 1] before the loss (BlurDM's authors do)
        "perceptual_weight": 0.0,  # LPIPS; needs its local weight files (see unblur.metrics.lpips)
        "multiscale": True,  # sum the loss over every output scale of multi-scale backbones
    },
    "train": {
        "seed": 0,  # initial weights and every batch
        "device": "auto",  # cuda if available, else cpu
        "amp": "auto",  # bf16 | fp16 | none; auto = bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX)
        "channels_last": "auto",  # NHWC convolution weights and inputs: true | false; auto = on CPU
        "ema": 0.999,  # decay of the weights' moving average (validated and saved)
        "ckpt_every": 500,  # steps between checkpoints
        "val_every": 1000,  # steps between validations (PSNR/SSIM of the EMA weights)
        "log_every": 50,  # steps averaged per log row
        "keep": 2,  # checkpoints kept
        "tensorboard": True,  # event files in RUN_DIR/tensorboard when the package is installed
        # a registered model's name or a model file to start from (fine-tuning): its weights must fit model, or the
        # method can start from it (BlurDM: a plainly trained model of its backbone, with prior_init: identity)
        "init": None,
    },
    # a multi-stage method (BlurDM): each entry's overrides make one stage's config; the stages run in
    # order into RUN_DIR/stage-<k>, each starting from the previous one's weights
    "stages": [],
}


# sections whose keys are a constructor's arguments: any key may be added (the constructor checks them)
OPEN_SECTIONS = ("model.",)


def merge(base: dict, update: dict, path: str = "") -> dict:
    """Recursively merge ``update`` into a copy of ``base``; unknown keys are an error (typos fail
    loudly), except inside the model section, whose keys are the architecture's own arguments."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in out and not where.startswith(OPEN_SECTIONS):
            raise KeyError(f"unknown config key '{where}'")
        if key not in out:
            out[key] = value
            continue
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise TypeError(f"config key '{where}' is a section, got {value!r}")
            out[key] = merge(out[key], value, where + ".")
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict:
    """``"optim.lr=3e-4"`` -> ``{"optim": {"lr": 0.0003}}``."""
    if "=" not in text:
        raise ValueError(f"override '{text}' is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    value = _yaml(raw) if raw.strip() else ""
    for part in reversed(key.strip().split(".")):
        if not part:
            raise ValueError(f"override '{text}' has an empty key part")
        value = {part: value}
    return value


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """DEFAULTS <- YAML file <- overrides. A file or override that changes ``model.arch`` starts
    the model section afresh (the other architecture's arguments would not fit)."""
    cfg = copy.deepcopy(DEFAULTS)
    updates = [_yaml(Path(path).read_text()) or {}] if path is not None else []
    updates += [parse_override(text) for text in overrides]
    for update in updates:
        arch = update.get("model", {}).get("arch") if isinstance(update.get("model"), dict) else None
        if arch is not None and arch != cfg["model"].get("arch"):
            cfg["model"] = {}
        cfg = merge(cfg, update)
    return cfg

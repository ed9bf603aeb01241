"""Loading Stable-Diffusion-style components from a local diffusers folder, never from the network.

DeblurDiff (and BD-Diff's generator) build on a latent diffusion model: a VAE
(``AutoencoderKL``), a denoising ``UNet2DConditionModel`` and a noise scheduler. A user who
has Stable Diffusion 2.x weights on disk points ``--sd PATH`` at its diffusers-format folder:

    PATH/unet/{config.json, diffusion_pytorch_model.safetensors}
    PATH/vae/{config.json, diffusion_pytorch_model.safetensors}
    PATH/scheduler/scheduler_config.json
    PATH/text_encoder/, PATH/tokenizer/   (optional: DeblurDiff uses the empty prompt)

Everything is read with ``local_files_only=True`` and the Hugging Face hub switched to
offline mode first, so a missing file is a clear error naming it, never a download.
Needs the optional extra ``unblur[diffusion]`` (the ``diffusers`` package).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from unblur.diffusion.schedules import NoiseSchedule

REQUIRED = {
    "unet": ("unet/config.json", "UNet2DConditionModel"),
    "vae": ("vae/config.json", "AutoencoderKL"),
    "scheduler": ("scheduler/scheduler_config.json", "a diffusers scheduler"),
}
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
FP16_NAMES = ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")  # SD repos ship both


class SDFolderError(ValueError):
    """The folder is not a complete diffusers-format latent diffusion model (one line saying what is missing)."""


@dataclass
class LatentDiffusion:
    """The parts of a latent diffusion model that the methods use: diffusers' UNet and VAE, our noise schedule
    (:mod:`unblur.diffusion.schedules`); ``scale``: the VAE's latent scaling factor."""

    unet: object
    vae: object
    schedule: NoiseSchedule
    scale: float


def require_diffusers():
    """The diffusers module, imported with the hub offline; a one-line error when it is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: the hub reads it once
    try:
        import diffusers
    except ImportError:
        raise SDFolderError("loading Stable Diffusion needs the diffusers package: pip install 'unblur[diffusion]'") from None
    return diffusers


def check_folder(path: str | Path) -> Path:
    """Raise :class:`SDFolderError` naming the first missing piece of a diffusers folder."""
    path = Path(path)
    if not path.is_dir():
        raise SDFolderError(f"--sd {path}: not a folder")
    for part, (config, what) in REQUIRED.items():
        if not (path / config).is_file():
            raise SDFolderError(f"--sd {path}: missing {config} (the {what})")
        if part != "scheduler" and not any((path / part / name).is_file() for name in WEIGHT_NAMES + FP16_NAMES):
            raise SDFolderError(f"--sd {path}: missing {part}/{WEIGHT_NAMES[0]} (the {what}'s weights)")
    return path


def load_sd(path: str | Path, device="cpu", dtype=None) -> LatentDiffusion:
    """UNet, VAE and noise schedule from a local diffusers-format folder (see the module docstring)."""
    path = check_folder(path)
    diffusers = require_diffusers()
    kwargs = {"local_files_only": True, **({"torch_dtype": dtype} if dtype is not None else {})}

    def variant(part: str) -> dict:  # only the fp16 files present: ask diffusers for that variant
        full = any((path / part / name).is_file() for name in WEIGHT_NAMES)
        return {} if full else {"variant": "fp16"}

    unet = diffusers.UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kwargs, **variant("unet"))
    vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae", **kwargs, **variant("vae"))
    unet, vae = unet.to(device).eval(), vae.to(device).eval()
    try:
        schedule = NoiseSchedule.from_config(json.loads((path / REQUIRED["scheduler"][0]).read_text()))
    except ValueError as err:  # an unreadable or unsupported scheduler: one line naming the file
        raise SDFolderError(f"--sd {path}: {REQUIRED['scheduler'][0]}: {err}") from None
    return LatentDiffusion(unet, vae, schedule, float(getattr(vae.config, "scaling_factor", 0.18215)))

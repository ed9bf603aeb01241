"""Loading Stable-Diffusion-style components from a local diffusers folder, never from the network.

DeblurDiff (and BD-Diff's generator) build on a latent diffusion model: a VAE
(``AutoencoderKL``), a denoising ``UNet2DConditionModel`` and a noise scheduler. A user who
has Stable Diffusion 2.x weights on disk points ``--sd PATH`` at its diffusers-format folder:

    PATH/unet/{config.json, diffusion_pytorch_model.safetensors}
    PATH/vae/{config.json, diffusion_pytorch_model.safetensors}
    PATH/scheduler/scheduler_config.json
    PATH/text_encoder/, PATH/tokenizer/   (optional: DeblurDiff encodes its empty prompt with them once,
                                          :func:`encode_empty_prompt`)

Everything is read with ``local_files_only=True`` and the Hugging Face hub switched to
offline mode first, so a missing file is a clear error naming it, never a download.
Needs the optional extra ``unblur[diffusion]`` (the ``diffusers`` package; ``transformers`` for the
text encoder).
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


def _variant(folder: Path, full_names: tuple[str, ...]) -> dict:
    """``{}`` when ``folder`` holds full-precision weights, else ask for the fp16 variant (SD repositories often
    hold only that)."""
    return {} if any((folder / name).is_file() for name in full_names) else {"variant": "fp16"}


def load_sd(path: str | Path, device="cpu", dtype=None) -> LatentDiffusion:
    """UNet, VAE and noise schedule from a local diffusers-format folder (see the module docstring)."""
    path = check_folder(path)
    diffusers = require_diffusers()
    kwargs = {"local_files_only": True, **({"torch_dtype": dtype} if dtype is not None else {})}

    unet = diffusers.UNet2DConditionModel.from_pretrained(
        path, subfolder="unet", **kwargs, **_variant(path / "unet", WEIGHT_NAMES)
    )
    vae = diffusers.AutoencoderKL.from_pretrained(path, subfolder="vae", **kwargs, **_variant(path / "vae", WEIGHT_NAMES))
    unet, vae = unet.to(device).eval(), vae.to(device).eval()
    try:
        schedule = NoiseSchedule.from_config(json.loads((path / REQUIRED["scheduler"][0]).read_text()))
    except ValueError as err:  # an unreadable or unsupported scheduler: one line naming the file
        raise SDFolderError(f"--sd {path}: {REQUIRED['scheduler'][0]}: {err}") from None
    return LatentDiffusion(unet, vae, schedule, float(getattr(vae.config, "scaling_factor", 0.18215)))


TEXT_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def has_text_encoder(path: str | Path) -> bool:
    """Whether the folder has a tokenizer and a text encoder (their configs; the weights are checked on loading)."""
    path = Path(path)
    return (path / "text_encoder" / "config.json").is_file() and (path / "tokenizer").is_dir()


def encode_empty_prompt(path: str | Path):
    """The empty prompt as the folder's own tokenizer and text encoder encode it: "" padded to the tokenizer's
    length (CLIP: the start and end tokens, then padding, 77 in all), through the text encoder, its last
    hidden state (SD 2.x's diffusers folders hold the text encoder without its last layer, so this is the
    penultimate layer, normalised, as SD 2.x conditions). Returns (1, tokens, width) float32 on the CPU.
    Needs the ``transformers`` package."""
    import torch

    path = Path(path)
    if not has_text_encoder(path):
        raise SDFolderError(f"--sd {path}: missing text_encoder/config.json or tokenizer/ (the empty prompt's encoder)")
    require_diffusers()  # the hub offline before transformers is imported
    try:
        import transformers
    except ImportError:
        raise SDFolderError(
            "encoding the empty prompt with the SD folder's text encoder needs the transformers package: "
            "pip install transformers (or set empty_prompt: zeros)"
        ) from None
    tokenizer = transformers.CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    encoder = transformers.CLIPTextModel.from_pretrained(
        path / "text_encoder", local_files_only=True, **_variant(path / "text_encoder", TEXT_WEIGHT_NAMES)
    ).float().eval()
    ids = tokenizer("", padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids).last_hidden_state.float()

"""The registry of models we ship, and loading by name or path.

Weights live next to this file as self-describing safetensors model files
(see :mod:`unblur.modelfile`), each with a model card ``<name>.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    summary: str
    trained_on: str

    @property
    def path(self) -> Path:
        return WEIGHTS / self.file

    @property
    def card(self) -> Path:
        return WEIGHTS / f"{self.name}.md"


MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry(
            name="nafnet-real-world",
            file="nafnet-real-world.safetensors",
            summary="the default: nafnet-small's network fine-tuned for real photos (shake up to 60+ px, noise, JPEG, "
            "highlights); returns sharp photos unchanged",
            trained_on="real-world preset (a mixture: realistic, uniform, GoPro-like, large shake, low light, "
            "slight shake, sharp photos), 217 sharp photos, CPU",
        ),
        ModelEntry(
            name="nafnet-small",
            file="nafnet-small.safetensors",
            summary="NAFNet, width 32, 7.9 M parameters (fp16 file); regression; best on uniform-kernel blur, "
            "weak on real camera shake",
            trained_on="synthetic camera-shake blur (uniform-kernel preset) on 217 sharp photos",
        ),
        ModelEntry(
            name="nafnet-small-realistic",
            file="nafnet-small-realistic.safetensors",
            summary="nafnet-small fine-tuned for realistic blur (+1.1 dB there, -0.3 dB on uniform blur)",
            trained_on="realistic preset (6-DoF shake, clipping, noise, JPEG) + uniform-kernel, 217 sharp photos",
        ),
        ModelEntry(
            name="nafnet-blurdm",
            file="nafnet-blurdm.safetensors",
            summary="BlurDM on a small NAFNet (width 16), 1.7 M parameters; a method demo, weaker than the default",
            trained_on="uniform-kernel preset, 217 sharp photos, 1200 CPU steps over BlurDM's three stages",
        ),
        ModelEntry(
            name="deblurdiff-small",
            file="deblurdiff-small.safetensors",
            summary="DeblurDiff (LKPN + EAC, one step of a frozen prior from z_s) on the bundled vae-f2 and prior-f2; "
            "generative, --steps/--strength/--seed/--samples/--save-kernels; a method demo, +0.3 dB at most, far below the default",
            trained_on="realistic + uniform-kernel pairs, 217 sharp photos: the LKPN 1600 CPU steps on the frozen prior-f2",
        ),
        ModelEntry(
            name="bd-diff-small",
            file="bd-diff-small.safetensors",
            summary="BD-Diff (two Q-Formers + structure map, three tasks) on a small latent diffusion model trained here; "
            "generative, --steps/--seed/--samples, `unblur transfer`; a method demo, below the blurred input in PSNR",
            trained_on="uniform-kernel pairs + unpaired realistic-preset blurred photos, 4000 CPU steps (the first deblurdiff-small's VAE)",
        ),
    ]
}
# The default is the model for the photos people bring (real camera shake, noise, JPEG, sharp photos left
# alone); nafnet-small, trained on uniform kernels only, stays for that blur (its card and the real-world
# card give the figures behind the choice).
DEFAULT = "nafnet-real-world"

#: Trained building blocks that training configs start from (``model.vae: vae-f2``), not photo tools:
#: ``unblur models`` lists them apart, and ``unblur deblur --model`` does not take them.
COMPONENTS: dict[str, ModelEntry] = {
    e.name: e
    for e in [
        ModelEntry(
            name="vae-f2",
            file="vae-f2.safetensors",
            summary="the latent of our small latent diffusion models: AutoencoderKL downsampling by 2, 12 channels, "
            "no middle attention; reconstructs sharp 256-px photo crops at 35.4 dB (its card)",
            trained_on="sharp 96-px crops of 217 photos, CPU",
        ),
        ModelEntry(
            name="prior-f2",
            file="prior-f2.safetensors",
            summary="the generative prior of our small latent diffusion models: a UNet (widths 64/128/256) trained on "
            "sharp photo latents of vae-f2 alone, for DeblurDiff's model.prior (its card)",
            trained_on="sharp 96-px crops of 217 photos, CPU",
        ),
    ]
}


def resolve_component(name_or_path: str | Path) -> Path:
    """A registered component's name (:data:`COMPONENTS`) or a path to a model file -> the file's path."""
    if str(name_or_path) in COMPONENTS:
        path = COMPONENTS[str(name_or_path)].path
        if not path.exists():
            raise FileNotFoundError(f"component '{name_or_path}' is registered but its weights are missing ({path.name})")
        return path
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file or registered component: {name_or_path} (registered: {', '.join(COMPONENTS)})")
    return path


#: Classical methods with the same restorer interface (``unblur.baselines``): table rows, not photo tools.
CLASSICAL: dict[str, str] = {
    "identity": "the blurred input itself (the table's floor)",
    "wiener-oracle": "Wiener deconvolution with the TRUE kernel, Laplacian regulariser 1e-2, linear light; needs a kernel",
    "rl-oracle": "Richardson-Lucy, 30 iterations, with the TRUE kernel, linear light; needs a kernel",
    "wiener-blind": "Wiener deconvolution assuming a Gaussian blur whose width NIQE picks per image (blind)",
}


def resolve(name_or_path: str | Path | None) -> Path:
    """A registered name (or None for the default) or a path to a model file -> the file's path."""
    if name_or_path is None:
        name_or_path = DEFAULT
    if str(name_or_path) in MODELS:
        path = MODELS[str(name_or_path)].path
        if not path.exists():
            raise FileNotFoundError(f"model '{name_or_path}' is registered but its weights are missing ({path.name})")
        return path
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        return path
    raise ValueError(f"unknown model '{name_or_path}' (registered: {', '.join(MODELS)}; or give a .safetensors path)")


def load_model(name_or_path: str | Path | None = None, device="cpu", sd: str | None = None):
    """Returns ``(model, meta)``: the method (:mod:`unblur.methods.base`) in eval mode on ``device`` and its
    file's metadata (``sd``: a local Stable Diffusion folder for the models built on one)."""
    from unblur.modelfile import load_model_file

    return load_model_file(resolve(name_or_path), device, sd=sd)

"""A small latent diffusion model of Stable Diffusion's classes, for training from scratch on a CPU.

No Stable Diffusion weights can be downloaded here, so DeblurDiff and BD-Diff also run on a
latent diffusion model we train ourselves: the same diffusers classes as SD 2.x (``AutoencoderKL``,
``UNet2DConditionModel``), narrower and shallower, with SD's noise schedule. The VAE downsamples by
``2 ** (len(vae_widths) - 1)`` (SD: 8; here 4 by default, so small photos keep enough latent pixels).
"""

from __future__ import annotations

import torch

from unblur.diffusion.schedules import NoiseSchedule
from unblur.methods.base import Method
from unblur.methods.sd_loading import LatentDiffusion, require_diffusers
from unblur.nn.configurable import register_to_config
from unblur.nn.layers import pad_to_multiple


def make_vae(latent_channels: int = 4, widths=(32, 64, 128), mid_attention: bool = True):
    """A randomly initialised ``AutoencoderKL`` downsampling by ``2 ** (len(widths) - 1)``.

    ``mid_attention``: SD's self-attention in the encoder's and the decoder's middle block. Its cost grows
    with the square of the latent's pixel count, so it dominates a VAE that downsamples little (our choice
    for such VAEs: off)."""
    diffusers = require_diffusers()
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=tuple(widths),
        down_block_types=("DownEncoderBlock2D",) * len(widths),
        up_block_types=("UpDecoderBlock2D",) * len(widths),
        layers_per_block=1,
        # 8 groups, not SD's 32: with 32 channels, 32 groups would normalise every channel on its own and
        # wipe out its contrast (a 120-step test: L1 0.146 with 32 groups, 0.106 with 8)
        norm_num_groups=min(8, widths[0]),
        mid_block_add_attention=mid_attention,
    )
    # Start nearly deterministic (posterior std e^-4): a fresh encoder's log-variance is ~0, i.e. unit
    # noise on every latent, which the decoder cannot see through until training has silenced it;
    # on a CPU budget that costs most of the run (19.5 dB after 500 steps from the default start).
    with torch.no_grad():
        vae.quant_conv.bias[latent_channels:] = -8.0
    return vae


class SmallVAE(Method):
    """The VAE training stage as a method (``unblur train`` with ``arch: small-vae``).

    ``restore(x)`` reconstructs x, (B, 3, H, W) in [0, 1], through the posterior's mode; the training loss
    is image_loss(reconstruction, sharp) + kl_weight * KL with the latent drawn from the posterior, and
    validation scores the reconstruction of the sharp image. Trained on sharp photos only: the VAE
    must reproduce detail the diffusion model will generate.
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4, widths=(32, 64, 128), kl_weight: float = 1e-6, mid_attention: bool = True):
        super().__init__()
        self.vae = make_vae(latent_channels, widths, mid_attention)
        self.kl_weight = kl_weight

    def reconstruct(self, x: torch.Tensor, sample: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(x through the VAE, the posterior's KL per image); ``sample``: a latent drawn from the posterior, not its
        mode. Sides that are not multiples of the VAE's downsampling are padded, and the result cropped back."""
        padded, (h, w) = pad_to_multiple(x, 2 ** (len(self.vae.config.block_out_channels) - 1))
        posterior = self.vae.encode(padded * 2 - 1).latent_dist
        z = posterior.sample() if sample else posterior.mode()
        return ((self.vae.decode(z).sample + 1) / 2)[..., :h, :w], posterior.kl()

    def training_loss(self, batch: dict[str, torch.Tensor], image_loss) -> tuple[torch.Tensor, dict[str, float]]:
        sharp = batch["sharp"]
        recon, kl = self.reconstruct(sharp, sample=self.training)
        return image_loss(recon, sharp) + self.kl_weight * kl.mean(), {}

    def validation_output(self, blurred: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        return self.restore(sharp)

    def restore(self, blurred: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        return self.reconstruct(blurred)[0]


def build_small_sd(
    latent_channels: int = 4,
    vae_widths=(32, 64, 128),
    unet_widths=(64, 128, 256),
    cross_attention_dim: int = 128,
    attention_head_dim: int = 8,
    prediction_type: str = "epsilon",
    vae=None,
    condition_channels: int = 0,
    vae_mid_attention: bool = True,
) -> LatentDiffusion:
    """Randomly initialised UNet + noise schedule (1000 steps, SD's scaled-linear betas) around ``vae``
    (a trained ``AutoencoderKL``, e.g. ``SmallVAE``'s after its stage; default: a random one).

    The UNet has cross-attention in every level but the first (as SD), so BD-Diff's tokens and
    DeblurDiff's empty context both fit; ``cross_attention_dim`` is the token width.
    ``condition_channels`` > 0: the UNet's input is cat(noisy latent, a condition map of that many
    channels) and its output the latent's channels (BD-Diff's structure map). ``vae_mid_attention``: as
    :func:`make_vae`'s ``mid_attention`` (for the random VAE; a given one keeps its own).
    """
    diffusers = require_diffusers()
    vae = vae or make_vae(latent_channels, vae_widths, vae_mid_attention)
    levels = len(unet_widths)
    unet = diffusers.UNet2DConditionModel(
        in_channels=latent_channels + condition_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(unet_widths),
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=min(8, unet_widths[0]),  # as the VAE: a few channels per group
    )
    # the clean estimate clamped to [-1, 1] while sampling, as diffusers' DDPM scheduler did for our bundled models
    schedule = NoiseSchedule.scaled_linear(1000, 0.00085, 0.012, prediction=prediction_type, clip=1.0)
    return LatentDiffusion(unet, vae, schedule, float(vae.config.scaling_factor))


def load_trained_vae(path: str, latent_channels: int | None = None, widths=None, mid_attention: bool | None = None):
    """The ``AutoencoderKL`` of a model file written by the VAE stage (``arch: small-vae``), frozen, in eval
    mode; when sizes are given, checked against them: a method rebuilt from its config alone (no file)
    must have the same VAE for its state dict to load."""
    from unblur.modelfile import load_model_file

    model, meta = load_model_file(path)
    if meta["arch"] != "small-vae":
        raise ValueError(f"{path}: expected a small-vae model file (the VAE stage), got arch '{meta['arch']}'")
    vae = model.vae.requires_grad_(False).eval()
    found = (vae.config.latent_channels, list(vae.config.block_out_channels), vae.config.mid_block_add_attention)
    wanted = (latent_channels, None if widths is None else list(widths), mid_attention)
    if any(w is not None and f != w for f, w in zip(found, wanted)):
        raise ValueError(f"{path}: its VAE has (latent_channels, widths, mid_attention) {found}, not {wanted}")
    return vae


@torch.no_grad()
def latent_scale(vae, images: torch.Tensor) -> float:
    """1 / standard deviation of ``vae``'s latents (posterior modes) of ``images`` (B, 3, H, W) in [0, 1].

    Stable Diffusion multiplies its latents by such a factor (0.18215) so that the diffusion model
    sees unit variance, which its noise schedule assumes; a VAE trained here has its own spread,
    measured once after its stage and written into the diffusion stage's config (``latent_scale``)."""
    return float(1.0 / vae.encode(images * 2 - 1).latent_dist.mode().std())

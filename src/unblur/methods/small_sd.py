"""A small latent diffusion model of Stable Diffusion's classes, for training from scratch on a CPU.

No Stable Diffusion weights can be downloaded here, so DeblurDiff and BD-Diff also run on a
latent diffusion model we train ourselves: the same diffusers classes as SD 2.x (``AutoencoderKL``,
``UNet2DConditionModel``, ``DDPMScheduler``), narrower and shallower. The VAE downsamples by
``2 ** (len(vae_widths) - 1)`` (SD: 8; here 4 by default, so small photos keep enough latent pixels).
"""

from __future__ import annotations

import torch
from torch import nn

from unblur.methods.sd_loading import LatentDiffusion, require_diffusers


def make_vae(latent_channels: int = 4, widths=(32, 64, 128)):
    """A randomly initialised ``AutoencoderKL`` downsampling by ``2 ** (len(widths) - 1)``."""
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
    )
    # Start nearly deterministic (posterior std e^-4): a fresh encoder's log-variance is ~0, i.e. unit
    # noise on every latent, which the decoder cannot see through until training has silenced it;
    # on a CPU budget that costs most of the run (19.5 dB after 500 steps from the default start).
    with torch.no_grad():
        vae.quant_conv.bias[latent_channels:] = -8.0
    return vae


class SmallVAE(nn.Module):
    """The VAE training stage, in the engine's method protocol (``unblur train`` with ``arch: small-vae``).

    ``forward(x, sharp=None, image_loss=None)``: reconstructs ``sharp`` (or ``x``), (B, 3, H, W) in
    [0, 1]; with ``image_loss`` returns image_loss(reconstruction, sharp) + kl_weight * KL, the
    latent drawn from the posterior (its mode at evaluation). Trained on sharp photos only: the
    VAE must reproduce detail the diffusion model will generate.
    """

    needs_sharp = True  # validation scores the reconstruction of the sharp image

    def __init__(self, latent_channels: int = 4, widths=(32, 64, 128), kl_weight: float = 1e-6):
        super().__init__()
        self.config = {"latent_channels": latent_channels, "widths": list(widths), "kl_weight": kl_weight}
        self.vae = make_vae(latent_channels, widths)
        self.kl_weight = kl_weight

    def forward(self, x: torch.Tensor, sharp: torch.Tensor | None = None, image_loss=None):
        target = sharp if sharp is not None else x
        posterior = self.vae.encode(target * 2 - 1).latent_dist
        z = posterior.sample() if self.training and image_loss is not None else posterior.mode()
        recon = (self.vae.decode(z).sample + 1) / 2
        if image_loss is None:
            return recon
        return image_loss(recon, target) + self.kl_weight * posterior.kl().mean()


def build_small_sd(
    latent_channels: int = 4,
    vae_widths=(32, 64, 128),
    unet_widths=(64, 128, 256),
    cross_attention_dim: int = 128,
    attention_head_dim: int = 8,
    prediction_type: str = "epsilon",
    vae=None,
    condition_channels: int = 0,
) -> LatentDiffusion:
    """Randomly initialised UNet + DDPM scheduler (1000 steps, SD's scaled-linear betas) around ``vae``
    (a trained ``AutoencoderKL``, e.g. ``SmallVAE``'s after its stage; default: a random one).

    The UNet has cross-attention in every level but the first (as SD), so BD-Diff's tokens and
    DeblurDiff's empty context both fit; ``cross_attention_dim`` is the token width.
    ``condition_channels`` > 0: the UNet's input is cat(noisy latent, a condition map of that many
    channels) and its output the latent's channels (BD-Diff's structure map).
    """
    diffusers = require_diffusers()
    vae = vae or make_vae(latent_channels, vae_widths)
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
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
    )
    return LatentDiffusion(unet, vae, scheduler, float(vae.config.scaling_factor))


def load_trained_vae(path: str, latent_channels: int | None = None, widths=None):
    """The ``AutoencoderKL`` of a model file written by the VAE stage (``arch: small-vae``), frozen, in eval
    mode; when sizes are given, checked against them: a method rebuilt from its config alone (no file)
    must have the same VAE for its state dict to load."""
    from unblur.train.checkpoint import load_model_file

    model, meta = load_model_file(path)
    if meta["arch"] != "small-vae":
        raise ValueError(f"{path}: expected a small-vae model file (the VAE stage), got arch '{meta['arch']}'")
    vae = model.vae.requires_grad_(False).eval()
    found = (vae.config.latent_channels, list(vae.config.block_out_channels))
    if latent_channels is not None and found != (latent_channels, list(widths)):
        raise ValueError(f"{path}: its VAE has (latent_channels, widths) {found}, not {(latent_channels, list(widths))}")
    return vae


@torch.no_grad()
def latent_scale(vae, images: torch.Tensor) -> float:
    """1 / standard deviation of ``vae``'s latents (posterior modes) of ``images`` (B, 3, H, W) in [0, 1].

    Stable Diffusion multiplies its latents by such a factor (0.18215) so that the diffusion model
    sees unit variance, which its noise schedule assumes; a VAE trained here has its own spread,
    measured once after its stage and written into the diffusion stage's config (``latent_scale``)."""
    return float(1.0 / vae.encode(images * 2 - 1).latent_dist.mode().std())

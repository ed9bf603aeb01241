"""A small latent diffusion model of Stable Diffusion's classes, for training from scratch on a CPU.

No Stable Diffusion weights can be downloaded here, so DeblurDiff and BD-Diff also run on a
latent diffusion model we train ourselves: the same diffusers classes as SD 2.x (``AutoencoderKL``,
``UNet2DConditionModel``, ``DDPMScheduler``), narrower and shallower. The VAE downsamples by
``2 ** (len(vae_widths) - 1)`` (SD: 8; here 4 by default, so small photos keep enough latent pixels).
"""

from __future__ import annotations

from unblur.methods.sd_loading import LatentDiffusion, require_diffusers


def build_small_sd(
    latent_channels: int = 4,
    vae_widths=(32, 64, 128),
    unet_widths=(64, 128, 256),
    cross_attention_dim: int = 128,
    attention_head_dim: int = 8,
    prediction_type: str = "epsilon",
) -> LatentDiffusion:
    """Randomly initialised VAE + UNet + DDPM scheduler (1000 steps, SD's scaled-linear betas).

    The UNet has cross-attention in every level but the first (as SD), so BD-Diff's tokens and
    DeblurDiff's empty context both fit; ``cross_attention_dim`` is the token width.
    """
    diffusers = require_diffusers()
    groups = min(32, vae_widths[0], unet_widths[0])
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=tuple(vae_widths),
        down_block_types=("DownEncoderBlock2D",) * len(vae_widths),
        up_block_types=("UpDecoderBlock2D",) * len(vae_widths),
        layers_per_block=1,
        norm_num_groups=groups,
    )
    levels = len(unet_widths)
    unet = diffusers.UNet2DConditionModel(
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(unet_widths),
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=groups,
    )
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
    )
    return LatentDiffusion(unet, vae, scheduler, float(vae.config.scaling_factor))

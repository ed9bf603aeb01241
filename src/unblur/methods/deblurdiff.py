"""DeblurDiff (Zou et al., 2025): a latent diffusion model steered by a re-estimated, deblurred latent.

Wiring (facts from the authors' code, see ``../shared/DESIGN.md`` §4):

* a frozen latent diffusion model: VAE + denoising UNet (Stable Diffusion 2.x when the user has
  it on disk, :func:`unblur.methods.sd_loading.load_sd`; or a small one trained by us);
* a ControlNet branch initialised from the UNet's encoder (trained), fed with the condition
  cat(z_blur, z_s) at latent resolution: diffusers' conditioning embedding with a single level
  (no downsampling) whose zero-initialised output is added to the noisy latent's first features,
  the same as DiffBIR's extra zero-initialised input channels;
* z_s = EAC(z_blur, LKPN(z_blur, z_t, t)): per-pixel kernels predicted from the current noisy
  latent at every step (:mod:`unblur.methods.deblurdiff_core`);
* loss MSE(prediction, target) + lambda * MSE(z_s, z_sharp); sampling with DDIM, then an AdaIN
  colour fix to the input.

Images are (B, 3, H, W) in [0, 1] with H, W multiples of the VAE's downsampling factor (8 for SD;
callers pad). The empty prompt is an all-zero text embedding: we do not load a text encoder
(the authors encode "" with SD's; a zero context is our deviation, documented here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unblur.methods.deblurdiff_core import LKPN, eac
from unblur.methods.sd_loading import LatentDiffusion
from unblur.nn.layers import eval_frozen


def adain_colour_fix(image: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``image`` the per-channel mean and standard deviation of ``reference`` (both (B, 3, H, W)):
    diffusion samples drift in colour; the blurred input's colour statistics are right."""
    mu_i, sd_i = image.mean((2, 3), keepdim=True), image.std((2, 3), keepdim=True) + eps
    mu_r, sd_r = reference.mean((2, 3), keepdim=True), reference.std((2, 3), keepdim=True)
    return (image - mu_i) / sd_i * sd_r + mu_r


class DeblurDiff(nn.Module):
    """The trainable ControlNet + LKPN around a frozen latent diffusion model ``sd``."""

    def __init__(self, sd: LatentDiffusion, kernel_size: int = 5, lkpn_width: int = 64, latent_weight: float = 1.0):
        super().__init__()
        from diffusers import ControlNetModel

        self.unet, self.vae, self.scheduler, self.scale = sd.unet, sd.vae, sd.scheduler, sd.scale
        self.unet.requires_grad_(False).eval()
        self.vae.requires_grad_(False).eval()
        c = self.unet.config.in_channels
        self.controlnet = ControlNetModel.from_unet(
            self.unet, conditioning_embedding_out_channels=(self.unet.config.block_out_channels[0],), conditioning_channels=2 * c
        )
        self.lkpn = LKPN(latent_channels=c, width=lkpn_width, kernel_size=kernel_size)
        self.kernel_size, self.latent_weight = kernel_size, latent_weight

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            eval_frozen(self)  # the frozen UNet and VAE stay in inference mode
        return self

    def context(self, batch: int, device) -> torch.Tensor:
        """The empty prompt: (B, 1, cross_attention_dim) zeros (see the module docstring)."""
        return torch.zeros(batch, 1, self.unet.config.cross_attention_dim, device=device, dtype=self.unet.dtype)

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> scaled latent (B, C, H/f, W/f), the posterior's mode (deterministic)."""
        return self.vae.encode(image * 2 - 1).latent_dist.mode() * self.scale

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(latent / self.scale).sample + 1) / 2).clamp(0, 1)

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, z_blur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One UNet evaluation steered by the condition; returns (the UNet's prediction, z_s)."""
        z_s = eac(z_blur, self.lkpn(z_blur, z_t, t), self.kernel_size)
        ctx = self.context(z_t.shape[0], z_t.device)
        down, mid = self.controlnet(z_t, t, ctx, controlnet_cond=torch.cat([z_blur, z_s], dim=1), return_dict=False)
        pred = self.unet(z_t, t, ctx, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        return pred, z_s

    def loss(self, blurred: torch.Tensor, sharp: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training loss on a batch of (blurred, sharp) images in [0, 1]: diffusion loss + latent loss of z_s."""
        z_blur, z_sharp = self.encode(blurred), self.encode(sharp)
        noise = torch.randn(z_sharp.shape, generator=generator).to(z_sharp)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (z_sharp.shape[0],), generator=generator)
        t = t.to(z_sharp.device)
        z_t = self.scheduler.add_noise(z_sharp, noise, t)
        pred, z_s = self.denoise(z_t, t, z_blur)
        kind = self.scheduler.config.prediction_type
        target = noise if kind == "epsilon" else self.scheduler.get_velocity(z_sharp, noise, t)
        return F.mse_loss(pred, target) + self.latent_weight * F.mse_loss(z_s, z_sharp)

    @torch.no_grad()
    def sample(self, blurred: torch.Tensor, steps: int = 20, generator: torch.Generator | None = None) -> torch.Tensor:
        """Deblur (B, 3, H, W) in [0, 1] with ``steps`` DDIM steps; the same generator seed gives the same image."""
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(steps, device=blurred.device)
        z_blur = self.encode(blurred)
        z = torch.randn(z_blur.shape, generator=generator).to(z_blur) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            pred, _ = self.denoise(z, t.expand(z.shape[0]), z_blur)
            z = scheduler.step(pred, t, z).prev_sample
        return adain_colour_fix(self.decode(z), blurred).clamp(0, 1)

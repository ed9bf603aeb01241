"""DeblurDiff (Zou et al., 2025): a latent diffusion model steered by a re-estimated, deblurred latent.

Wiring (facts from the authors' code, see ``docs/design.md``, "DeblurDiff"):

* a frozen latent diffusion model: VAE + denoising UNet (Stable Diffusion 2.x when the user has
  it on disk, :func:`unblur.methods.sd_loading.load_sd`; or a small one trained by us);
* a ControlNet branch initialised from the UNet's encoder (trained), fed with the condition
  cat(z_blur, z_s) at latent resolution: diffusers' conditioning embedding with a single level
  (no downsampling) whose zero-initialised output is added to the noisy latent's first features,
  the same as DiffBIR's extra zero-initialised input channels;
* z_s = EAC(z_blur, LKPN(z_blur, z_t, t)): per-pixel kernels predicted from the current noisy
  latent at every step (:mod:`unblur.methods.deblurdiff_core`);
* loss MSE(prediction, target) + lambda * MSE(z_s, z_sharp); sampling with DDIM (``sampler: ddpm``:
  ancestral DDPM, as the authors sample), then an AdaIN colour fix to the input.

Images are (B, 3, H, W) in [0, 1] with H, W multiples of the VAE's downsampling factor (8 for SD;
callers pad). The empty prompt is an all-zero text embedding: we do not load a text encoder
(the authors encode "" with SD's; a zero context is our deviation, documented here).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unblur.methods.deblurdiff_core import LKPN, eac
from unblur.methods.latent import LatentMethod
from unblur.methods.sd_loading import LatentDiffusion
from unblur.nn.configurable import register_to_config


class DeblurDiff(LatentMethod):
    """The trainable ControlNet + LKPN around a frozen latent diffusion model ``sd``."""

    predicts_kernels = True

    def __init__(
        self,
        sd: LatentDiffusion,
        kernel_size: int = 5,
        lkpn_width: int = 64,
        latent_weight: float = 1.0,
        val_steps: int = 50,
        latent_scale: float | None = None,
        sampler: str = "ddim",
    ):
        super().__init__(sd, latent_scale, val_steps, sampler)
        from diffusers import ControlNetModel

        self.unet.requires_grad_(False).eval()
        c = self.unet.config.in_channels
        self.controlnet = ControlNetModel.from_unet(
            self.unet, conditioning_embedding_out_channels=(self.unet.config.block_out_channels[0],), conditioning_channels=2 * c
        )
        self.lkpn = LKPN(latent_channels=c, width=lkpn_width, kernel_size=kernel_size)
        self.kernel_size, self.latent_weight = kernel_size, latent_weight

    def context(self, batch: int, device) -> torch.Tensor:
        """The empty prompt: (B, 1, cross_attention_dim) zeros (see the module docstring)."""
        return torch.zeros(batch, 1, self.unet.config.cross_attention_dim, device=device, dtype=self.unet.dtype)

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
        z_t, noise, t = self.noisy(z_sharp, generator=generator)
        pred, z_s = self.denoise(z_t, t, z_blur)
        return F.mse_loss(pred, self.schedule.target(z_sharp, noise, t)) + self.latent_weight * F.mse_loss(z_s, z_sharp)

    def training_loss(self, batch: dict[str, torch.Tensor], image_loss) -> tuple[torch.Tensor, dict[str, float]]:
        """:meth:`loss` (``image_loss`` is not used: both terms live in the latent space); noise and timesteps
        come from the global generator, which the engine seeds and checkpoints."""
        return self.loss(batch["blurred"], batch["sharp"]), {}

    def predictor(self):
        c = self.unet.config.in_channels

        def predict(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # u: cat(z_t, z_blur)
            return self.denoise(u[:, :c], t.expand(len(u)), u[:, c:])[0]

        return predict

    def kernel_picture(self, z: torch.Tensor, z_blur: torch.Tensor, size: tuple[int, int], tile: int) -> torch.Tensor:
        """The kernels the LKPN predicts for the result (z_t = the final latent, t = 0), drawn by :func:`kernel_map`:
        (B, 3, H, W) in [0, 1], one block of f x f pixels per latent pixel."""
        c, (h, w), f = self.unet.config.in_channels, size, self.factor
        t0 = torch.zeros(1, dtype=torch.long, device=z.device)
        taps = self.over_latent(lambda u: self.lkpn(u[:, c:], u[:, :c], t0.expand(len(u))), torch.cat([z, z_blur], 1), tile)
        taps = taps[..., : -(-h // f), : -(-w // f)]  # the latent pixels of the image, not of its padding
        pictures = [np.repeat(np.repeat(kernel_map(k[None].cpu(), self.kernel_size), f, 0), f, 1)[:h, :w] for k in taps]
        return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).to(z.device)


def kernel_map(kernels: torch.Tensor, k: int) -> np.ndarray:
    """Picture of predicted kernels, (1, C*k*k, h, w) in :func:`eac`'s layout -> (h, w, 3) RGB in [0, 1].

    Per pixel, the kernels are averaged over latent channels; brightness is their energy (sum of
    absolute taps, scaled by its 99th percentile over the image), hue the orientation of the
    off-centre mass (second moments of |K| over the tap offsets: a horizontal smear is red,
    vertical cyan), saturation how elongated that mass is (0: isotropic, 1: a line).
    """
    import cv2

    taps = kernels[0].float().view(-1, k, k, *kernels.shape[-2:]).mean(0).abs()  # (k, k, h, w)
    offsets = torch.arange(k, dtype=torch.float32) - k // 2
    dy, dx = offsets.view(k, 1, 1, 1), offsets.view(1, k, 1, 1)
    mass = taps.sum((0, 1)) + 1e-12
    sxx, syy, sxy = ((taps * m).sum((0, 1)) / mass for m in (dx * dx, dy * dy, dx * dy))
    angle = 0.5 * torch.atan2(2 * sxy, sxx - syy)  # (-pi/2, pi/2]: orientation, not direction
    elongation = torch.sqrt((sxx - syy) ** 2 + 4 * sxy**2) / (sxx + syy + 1e-12)
    energy = mass / (torch.quantile(mass.flatten(), 0.99) + 1e-12)
    hsv = np.stack(
        [
            ((angle % torch.pi) / torch.pi * 180).numpy(),
            (elongation.clamp(0, 1) * 255).numpy(),
            (energy.clamp(0, 1) * 255).numpy(),
        ],
        axis=-1,
    ).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32) / 255


class DeblurDiffSmall(DeblurDiff):
    """DeblurDiff on our small latent diffusion model, trained here from scratch (``arch: deblurdiff-small``).

    No Stable Diffusion prior exists on this machine, so the UNet trains with the ControlNet and the
    LKPN (``train_unet``); the VAE comes trained from its own stage (``vae``: the path of that stage's
    model file, read at construction only; the weights then live in this model's state dict).

    Its model file holds every weight (VAE included: a few MiB).
    """

    @register_to_config(ignore=("vae",))
    def __init__(
        self,
        latent_channels: int = 4,
        vae_widths=(32, 64, 128),
        unet_widths=(32, 64, 128),
        cross_attention_dim: int = 64,
        prediction_type: str = "v_prediction",
        kernel_size: int = 5,
        lkpn_width: int = 32,
        latent_weight: float = 1.0,
        train_unet: bool = True,
        val_steps: int = 10,
        latent_scale: float | None = None,
        vae: str | None = None,
        sampler: str = "ddim",
    ):
        from unblur.methods.small_sd import build_small_sd, load_trained_vae

        sd = build_small_sd(
            latent_channels,
            vae_widths,
            unet_widths,
            cross_attention_dim,
            prediction_type=prediction_type,
            vae=load_trained_vae(vae, latent_channels, vae_widths) if vae else None,
        )
        super().__init__(sd, kernel_size, lkpn_width, latent_weight, val_steps, latent_scale, sampler)
        self.unet.requires_grad_(train_unet)


class DeblurDiffSD(DeblurDiff):
    """DeblurDiff on a user's Stable Diffusion 2.x folder (``arch: deblurdiff``; ``sd``: its path), as the authors
    train it: UNet and VAE frozen, ControlNet and LKPN trained.

    Model files hold the trained parts only (ControlNet, LKPN: hundreds of MiB, not SD's gigabytes);
    the frozen parts are read from ``sd`` whenever the model is built, so a model file moves to another
    machine with ``unblur deblur --sd PATH`` pointing at that machine's copy of the same SD weights.
    """

    @register_to_config
    def __init__(
        self, sd: str, kernel_size: int = 5, lkpn_width: int = 64, latent_weight: float = 1.0, val_steps: int = 50,
        sampler: str = "ddim",
    ):  # fmt: skip
        from unblur.methods.sd_loading import load_sd

        super().__init__(load_sd(sd), kernel_size, lkpn_width, latent_weight, val_steps, sampler=sampler)

    FROZEN = ("unet.", "vae.")

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        return type(state)((k, v) for k, v in state.items() if not k[len(prefix) :].startswith(self.FROZEN))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Loads the trained parts; the frozen ones stay as read from ``sd`` (and must not be in ``state_dict``)."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith(self.FROZEN)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"DeblurDiff weights do not fit: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
        return result

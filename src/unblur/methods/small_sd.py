"""A small latent diffusion model of Stable Diffusion's classes, for training from scratch on a CPU.

No Stable Diffusion weights can be downloaded here, so DeblurDiff and BD-Diff also run on a
latent diffusion model we train ourselves: the same diffusers classes as SD 2.x (``AutoencoderKL``,
``UNet2DConditionModel``), narrower and shallower, with SD's noise schedule. The VAE downsamples by
``2 ** (len(vae_widths) - 1)`` (SD: 8; here 4 by default, so small photos keep enough latent pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unblur.diffusion.schedules import NoiseSchedule
from unblur.methods.base import Method
from unblur.methods.latent import LatentMethod
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


def build_on_vae(
    vae: str | None, latent_channels: int, vae_widths, unet_widths, cross_attention_dim: int, prediction_type: str,
    vae_mid_attention: bool,
) -> LatentDiffusion:  # fmt: skip
    """:func:`build_small_sd` around the trained VAE of the file or component ``vae`` (checked against the sizes
    given), or around a random VAE of those sizes when ``vae`` is None (a method rebuilt from its model file)."""
    trained = load_trained_vae(vae, latent_channels, vae_widths, vae_mid_attention) if vae else None
    return build_small_sd(
        latent_channels, vae_widths, unet_widths, cross_attention_dim,
        prediction_type=prediction_type, vae=trained, vae_mid_attention=vae_mid_attention,
    )  # fmt: skip


def load_trained_vae(path: str, latent_channels: int | None = None, widths=None, mid_attention: bool | None = None):
    """The ``AutoencoderKL`` of a model file written by the VAE stage (``arch: small-vae``; ``path``: the file,
    or a bundled component's name such as ``vae-f2``), frozen, in eval mode; when sizes are given, checked against them: a method rebuilt from its config alone (no file)
    must have the same VAE for its state dict to load."""
    from unblur.modelfile import load_model_file
    from unblur.zoo import resolve_component  # a bundled VAE by name (``vae-f2``) or a file

    model, meta = load_model_file(resolve_component(path))
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


class SmallPrior(LatentMethod):
    """The generative prior of our small latent diffusion model (``arch: small-prior``): the UNet of
    :func:`build_small_sd` trained on sharp photo crops alone, around a trained VAE (``vae``: its model file or
    bundled name, read at construction; its weights then live in this model's file), before any method steers
    it, as Stable Diffusion is trained before DeblurDiff and BD-Diff are built on it. The loss is the diffusion
    loss of the sharp latent with one all-zero context token (the empty prompt the steering methods give it).

    Run on its own (``unblur deblur --model FILE``) it has no condition, so it can only refine what it is given:
    SDEdit from the blurred latent noised at ``strength`` (default 0.3), the baseline any steering must beat.
    Validation scores it as a denoiser, which is what the steering methods use it for: the sharp crop's latent
    noised to timestep ``val_t`` (noise of seed 0), one prediction of the clean latent, decoded.

    ``clip_sample``: the sampler clamps its clean estimates to [-clip_sample, clip_sample] (0: never). The
    default 1 is what :func:`build_small_sd` has always done; it cuts the quarter of our unit-variance latents
    that lie beyond ±1 (measured on ``vae-f2``), and 0 is better (``docs/methods/deblurdiff.md``).
    """

    anchors = ("blurred",)

    @register_to_config(ignore=("vae",))
    def __init__(
        self,
        latent_channels: int = 12,
        vae_widths=(32, 64),
        unet_widths=(32, 64, 128),
        cross_attention_dim: int = 64,
        prediction_type: str = "v_prediction",
        vae: str | None = None,
        vae_mid_attention: bool = False,
        latent_scale: float | None = None,
        val_t: int = 250,
        val_steps: int = 10,
        sampler: str = "ddim",
        strength: float = 0.3,
        spacing: str = "leading",
        clip_sample: float = 1.0,
    ):
        sd = build_on_vae(vae, latent_channels, vae_widths, unet_widths, cross_attention_dim, prediction_type, vae_mid_attention)
        super().__init__(sd, latent_scale, val_steps, sampler, "clamped", strength, "blurred", spacing)
        self.val_t, self.schedule.clip = val_t, clip_sample

    def context(self, batch: int, device) -> torch.Tensor:
        """One all-zero token, (B, 1, cross_attention_dim): the empty prompt."""
        return torch.zeros(batch, 1, self.unet.config.cross_attention_dim, device=device, dtype=self.unet.dtype)

    def training_loss(self, batch: dict[str, torch.Tensor], image_loss) -> tuple[torch.Tensor, dict[str, float]]:
        """Diffusion loss of the sharp crops' latents (``image_loss`` and the blurred images are not used)."""
        z0 = self.encode(batch["sharp"])
        z_t, noise, t = self.noisy(z0)
        pred = self.unet(z_t, t, self.context(len(z0), z0.device)).sample
        return F.mse_loss(pred, self.schedule.target(z0, noise, t)), {}

    @torch.no_grad()
    def validation_output(self, blurred: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(sharp, self.multiple)
        z0 = self.encode(x)
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0)).to(z0)
        t = torch.full((len(z0),), self.val_t, device=z0.device)
        z_t = self.schedule.add_noise(z0, noise, t)
        x0 = self.schedule.predicted_x0(z_t, self.unet(z_t, t, self.context(len(z0), z0.device)).sample, t)
        return self.decode(x0)[..., :h, :w]

    def predictor(self):
        c = self.unet.config.in_channels

        def predict(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # u: cat(z_t, z_blur); no condition
            return self.unet(u[:, :c], t.expand(len(u)), self.context(len(u), u.device)).sample

        return predict


def load_trained_prior(path: str, **expected) -> LatentDiffusion:
    """The latent diffusion model of a model file written by the prior stage (``arch: small-prior``; ``path``: the
    file or a bundled component's name), its UNet and VAE frozen, in eval mode. ``expected``: constructor arguments
    of :class:`SmallPrior` (``latent_channels``, ``unet_widths`` ...) that a method rebuilt from its config alone
    must share with the file for its state dict to load; a mismatch is a one-line ValueError."""
    from unblur.modelfile import load_model_file
    from unblur.zoo import resolve_component

    model, meta = load_model_file(resolve_component(path))
    if meta["arch"] != "small-prior":
        raise ValueError(f"{path}: expected a small-prior model file (the prior stage), got arch '{meta['arch']}'")
    found = {k: list(v) if isinstance(v, tuple) else v for k, v in meta["config"].items()}
    wrong = {k: found.get(k) for k, v in expected.items() if found.get(k) != (list(v) if isinstance(v, tuple) else v)}
    if wrong:
        raise ValueError(f"{path}: its prior has {wrong}, not {({k: expected[k] for k in wrong})}")
    model.unet.requires_grad_(False).eval()
    return LatentDiffusion(model.unet, model.vae, model.schedule, model.scale)

"""DeblurDiff (Zou et al., 2025): a latent diffusion model steered by a re-estimated, deblurred latent.

Wiring (facts from the authors' code, see ``docs/design.md``, "DeblurDiff"):

* a frozen latent diffusion model: VAE + denoising UNet (Stable Diffusion 2.x when the user has
  it on disk, :func:`unblur.methods.sd_loading.load_sd`; or a small one trained by us);
* a ControlNet branch initialised from the UNet's encoder (trained), fed with the condition
  cat(z_blur, z_s) at latent resolution: diffusers' conditioning embedding with a single level
  (no downsampling) whose zero-initialised output is added to the noisy latent's first features,
  the same as DiffBIR's extra zero-initialised input channels;
* z_s = EAC(z_blur, LKPN(z_blur, z_t, t)): per-pixel kernels predicted from the current noisy
  latent at every step (:mod:`unblur.methods.deblurdiff_core`; ``lkpn``: our small LKPN or one at the
  authors' layout);
* loss MSE(prediction, target) + lambda * MSE(z_s, z_sharp); sampling with DDIM or (``sampler: ddpm``)
  ancestral DDPM, as the authors sample, then an AdaIN colour fix to the input.

The authors' choices that differ from ours are settings (their values are the defaults of ``arch:
deblurdiff``, ours those of ``deblurdiff-small``; ``docs/methods/deblurdiff.md`` cites their code):
``condition_range`` (the blurred image enters the VAE in [0, 1], "unit", or in [-1, 1], "signed"),
``posterior_sample`` (latents drawn from the VAE's posterior, not its mode), ``colour_fix`` (AdaIN on the
unclamped decode), ``spacing`` (their respaced timesteps) and, on Stable Diffusion, ``empty_prompt`` (the
text encoder's encoding of "", or one all-zero token).

Images are (B, 3, H, W) in [0, 1] with H, W multiples of the VAE's downsampling factor (8 for SD;
callers pad).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import warnings

from unblur.methods.deblurdiff_core import LKPN, LKPNS, AuthorsLKPN, eac
from unblur.methods.latent import LatentMethod
from unblur.methods.sd_loading import LatentDiffusion
from unblur.nn.configurable import register_to_config


class DeblurDiff(LatentMethod):
    """The trainable ControlNet + LKPN around a frozen latent diffusion model ``sd`` (settings: the module docstring,
    and :class:`~unblur.methods.latent.LatentMethod` for ``colour_fix``, ``strength``, ``start``, ``spacing``)."""

    predicts_kernels = True
    anchors = ("zs", "blurred")
    CONDITION_RANGES = ("signed", "unit")
    ZS_LOSSES = ("latent", "image")
    #: the frozen parts (the latent diffusion model's UNet and VAE) that a model file leaves out when
    #: ``frozen_elsewhere``: they are read again from where they came from whenever the model is built
    FROZEN = ("unet.", "vae.")
    frozen_elsewhere = False

    def __init__(
        self,
        sd: LatentDiffusion,
        kernel_size: int = 5,
        lkpn_width: int = 64,
        latent_weight: float = 1.0,
        val_steps: int = 50,
        latent_scale: float | None = None,
        sampler: str = "ddim",
        lkpn: str = "small", condition_range: str = "signed", posterior_sample: bool = False, colour_fix: str = "clamped",
        strength: float = 1.0, start: str = "zs", spacing: str | None = None,
        diffusion_weight: float = 1.0, lkpn_levels: int = 2, latent_t_min: int = 0, zs_loss: str = "latent",
    ):  # fmt: skip
        super().__init__(sd, latent_scale, val_steps, sampler, colour_fix, strength, start, spacing)
        from diffusers import ControlNetModel

        if lkpn not in LKPNS:
            raise ValueError(f"lkpn must be one of {', '.join(LKPNS)}, got {lkpn!r}")
        if condition_range not in self.CONDITION_RANGES:
            raise ValueError(f"condition_range must be one of {', '.join(self.CONDITION_RANGES)}, got {condition_range!r}")
        self.unet.requires_grad_(False).eval()
        c = self.unet.config.in_channels
        self.controlnet = ControlNetModel.from_unet(
            self.unet, conditioning_embedding_out_channels=(self.unet.config.block_out_channels[0],), conditioning_channels=2 * c
        )
        if lkpn == "authors":
            self.lkpn = AuthorsLKPN(c, lkpn_width, kernel_size, self.unet.config.cross_attention_dim)
        else:
            self.lkpn = LKPN(latent_channels=c, width=lkpn_width, kernel_size=kernel_size, levels=lkpn_levels)
        if diffusion_weight < 0 or latent_weight < 0 or diffusion_weight + latent_weight == 0:
            raise ValueError(f"diffusion_weight and latent_weight must be >= 0, not both 0 (got {diffusion_weight:g}, {latent_weight:g})")
        if latent_t_min and diffusion_weight:
            raise ValueError("latent_t_min is for the LKPN stage (diffusion_weight 0): the diffusion loss needs every timestep")
        if not 0 <= latent_t_min < self.schedule.num_train_timesteps:
            raise ValueError(f"latent_t_min must be in [0, {self.schedule.num_train_timesteps}), got {latent_t_min}")
        self.kernel_size, self.latent_weight, self.diffusion_weight = kernel_size, latent_weight, diffusion_weight
        if zs_loss not in self.ZS_LOSSES:
            raise ValueError(f"zs_loss must be one of {', '.join(self.ZS_LOSSES)}, got {zs_loss!r}")
        self.latent_t_min, self.zs_loss = latent_t_min, zs_loss
        self.condition_range, self.posterior_sample = condition_range, posterior_sample

    def state_dict(self, *args, **kwargs):
        """Every weight, or (``frozen_elsewhere``) the trained parts only."""
        state = super().state_dict(*args, **kwargs)
        if not self.frozen_elsewhere:
            return state
        prefix = kwargs.get("prefix", "")
        return type(state)((k, v) for k, v in state.items() if not k[len(prefix) :].startswith(self.FROZEN))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As ``nn.Module``'s; with ``frozen_elsewhere`` the frozen parts stay as built and may be absent."""
        if not self.frozen_elsewhere:
            return super().load_state_dict(state_dict, strict, assign)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith(self.FROZEN)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"DeblurDiff weights do not fit: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
        return result

    def init_from(self, trained: torch.nn.Module, arch: str) -> None:
        """As :meth:`Method.init_from`; a model whose file holds every weight (an earlier stage's, written before files
        left the frozen parts out) may also start one that takes them from elsewhere, if they are the same."""
        if not (self.frozen_elsewhere and type(trained) is type(self) and not trained.frozen_elsewhere):
            return super().init_from(trained, arch)
        from unblur.modelfile import weights_digest

        if weights_digest(trained.unet, trained.vae) != weights_digest(self.unet, self.vae):
            raise ValueError(f"its model ({arch}) was trained on another UNet and VAE than this config's prior")
        theirs, ours = {k: v for k, v in trained.state_dict().items() if not k.startswith(self.FROZEN)}, self.state_dict()
        if theirs.keys() != ours.keys() or any(theirs[k].shape != ours[k].shape for k in ours):
            raise ValueError(f"its model ({arch}, {trained.config}) differs from the config's")
        self.load_state_dict(theirs)

    def context(self, batch: int, device) -> torch.Tensor:
        """The empty prompt the UNet, the ControlNet (and the authors' LKPN) attend to: here one all-zero token,
        (B, 1, cross_attention_dim); :class:`DeblurDiffSD` encodes "" with the SD folder's text encoder."""
        return torch.zeros(batch, 1, self.unet.config.cross_attention_dim, device=device, dtype=self.unet.dtype)

    def condition(self, x: torch.Tensor, tile: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        """z_blur, the blurred image's latent as the settings say (``condition_range``, ``posterior_sample``)."""
        return self.encode_as(x, tile, self.condition_range == "signed", self.posterior_sample, generator)

    def kernels(self, z_blur: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.lkpn(z_blur, z_t, t, ctx)

    def z_s(self, z_blur: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """z_s = EAC(z_blur, LKPN(z_blur, z_t, t)), the deblurred latent (B, C, h, w); ``ctx``: the context (None:
        :meth:`context`)."""
        ctx = self.context(len(z_t), z_t.device) if ctx is None else ctx
        return eac(z_blur, self.kernels(z_blur, z_t, t, ctx), self.kernel_size)

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, z_blur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One UNet evaluation steered by the condition; returns (the UNet's prediction, z_s)."""
        ctx = self.context(z_t.shape[0], z_t.device)
        z_s = self.z_s(z_blur, z_t, t, ctx)
        down, mid = self.controlnet(z_t, t, ctx, controlnet_cond=torch.cat([z_blur, z_s], dim=1), return_dict=False)
        pred = self.unet(z_t, t, ctx, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        return pred, z_s

    def loss(
        self, blurred: torch.Tensor, sharp: torch.Tensor, generator: torch.Generator | None = None, image_loss=None
    ) -> torch.Tensor:
        """Training loss on a batch of (blurred, sharp) images in [0, 1]: ``diffusion_weight`` * diffusion loss +
        ``latent_weight`` * the loss of z_s: MSE(z_s, z_sharp) (``zs_loss: latent``, the authors'), or
        (``zs_loss: image``) ``image_loss`` of decode(z_s), through the frozen decoder, against the sharp image. The
        sharp target always enters the VAE in [-1, 1]; ``posterior_sample`` draws both latents. With
        ``diffusion_weight`` 0 (our LKPN stage, see the class docstring) neither the ControlNet nor the UNet runs:
        only the LKPN and the EAC train, at a fraction of the cost."""
        z_blur = self.condition(blurred, generator=generator)
        z_sharp = self.encode_as(sharp, sample=self.posterior_sample, generator=generator)
        z_t, noise, t = self.noisy(z_sharp, generator=generator, t_min=self.latent_t_min)
        if self.diffusion_weight == 0:
            return self.latent_weight * self.zs_term(self.z_s(z_blur, z_t, t), z_sharp, sharp, image_loss)
        pred, z_s = self.denoise(z_t, t, z_blur)
        diffusion = F.mse_loss(pred, self.schedule.target(z_sharp, noise, t))
        return self.diffusion_weight * diffusion + self.latent_weight * self.zs_term(z_s, z_sharp, sharp, image_loss)

    def zs_term(self, z_s: torch.Tensor, z_sharp: torch.Tensor, sharp: torch.Tensor, image_loss=None) -> torch.Tensor:
        """How far z_s is from the sharp crop: in the latent (MSE) or, for ``zs_loss: image``, as an image."""
        if self.zs_loss == "latent":
            return F.mse_loss(z_s, z_sharp)
        if image_loss is None:
            raise ValueError("zs_loss: image needs the image loss (training_loss passes the engine's)")
        decoded = (self.vae.decode(z_s / self.scale).sample + 1) / 2  # differentiable: the frozen decoder passes gradients
        return image_loss(decoded.float(), sharp)

    def training_loss(self, batch: dict[str, torch.Tensor], image_loss) -> tuple[torch.Tensor, dict[str, float]]:
        """:meth:`loss` (``image_loss``, the engine's, only for ``zs_loss: image``); noise and timesteps come from the
        global generator, which the engine seeds and checkpoints."""
        return self.loss(batch["blurred"], batch["sharp"], image_loss=image_loss), {}

    def predictor(self):
        c = self.unet.config.in_channels

        def predict(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # u: cat(z_t, z_blur)
            return self.denoise(u[:, :c], t.expand(len(u)), u[:, c:])[0]

        return predict

    def anchor(
        self, start: str, x: torch.Tensor, z_cond: torch.Tensor, noise: torch.Tensor, steps: int, tile: int = 0
    ) -> torch.Tensor:
        """``"zs"``: z_s as the first step of sampling from pure noise computes it (z_t = ``noise`` at the first
        timestep, where the LKPN has only z_blur to go on): the EAC's deblurred latent. ``"blurred"``: the
        input's latent, encoded as images are (in [-1, 1], the mode), whatever the condition's settings."""
        if start != "zs":
            return super().anchor(start, x, z_cond, noise, steps, tile)
        c, first = self.unet.config.in_channels, self.schedule.timesteps(steps)[0][0]

        def first_z_s(u: torch.Tensor) -> torch.Tensor:
            z_t, z_blur = u[:, :c], u[:, c:]
            t = torch.full((len(u),), first, device=u.device)
            return self.z_s(z_blur, z_t, t)

        return self.over_latent(first_z_s, torch.cat([noise, z_cond], 1), tile)

    def kernel_picture(self, z: torch.Tensor, z_blur: torch.Tensor, size: tuple[int, int], tile: int) -> torch.Tensor:
        """The kernels the LKPN predicts for the result (z_t = the final latent, t = 0), drawn by :func:`kernel_map`:
        (B, 3, H, W) in [0, 1], one block of f x f pixels per latent pixel."""
        c, (h, w), f = self.unet.config.in_channels, size, self.factor
        t0 = torch.zeros(1, dtype=torch.long, device=z.device)

        def kernels(u: torch.Tensor) -> torch.Tensor:
            return self.kernels(u[:, c:], u[:, :c], t0.expand(len(u)), self.context(len(u), u.device))

        taps = self.over_latent(kernels, torch.cat([z, z_blur], 1), tile)
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

    No Stable Diffusion prior exists on this machine. With ``prior`` (a model file of the prior stage,
    ``arch: small-prior``, or a bundled component's name) the UNet and the VAE are that prior's, trained on sharp
    photos before, and (``train_unet`` false) stay frozen while the ControlNet, initialised from the prior's
    encoder, and the LKPN train, as in the paper; the sizes and ``latent_scale`` given here must be the prior's. Without it the UNet
    trains with the ControlNet and the LKPN (``train_unet``) from scratch, the VAE trained in its own stage
    (``vae``). A prior given as a bundled component's name (``prior-f2``) is recorded with ``prior_digest``, a
    digest of its frozen weights, and model files then hold the trained parts only (the frozen UNet and VAE are
    read from the component whenever the model is built; a component whose weights changed since is refused
    in one line); a prior given as a path, or a VAE (``vae``), is read at construction only and its weights
    live in this model's files, whole.
    ``clip_sample``: as :class:`~unblur.methods.small_sd.SmallPrior`'s (1, the default, clamps clean estimates to
    [-1, 1] while sampling, as the bundled files were validated; 0 never clamps).
    ``diffusion_weight`` 0 is our LKPN stage: only the LKPN (``lkpn_width``, ``lkpn_levels`` downsamplings) trains,
    on the latent loss MSE(z_s, z_sharp), with neither UNet nor ControlNet in the step (one CPU core: 0.98 s per
    step of 8 crops of 128², where a joint step on prior-f2 took 2.0 s for 8 of 96²); a later stage (``train.init``: its file) trains the ControlNet with it. The authors train the
    two together from the start; we split them because on a CPU the ControlNet's steps are what the budget cannot
    pay for, and z_s is where anchored sampling starts. ``latent_t_min`` > 0 (that stage only) draws its timesteps in
    [latent_t_min, T) instead of all of them: where z_t is near pure noise, as when the anchor computes z_s at the
    first sampling timestep, the LKPN has only z_blur to go on and must deblur it itself. ``zs_loss: image`` measures
    z_s as the image it decodes to (the engine's image loss, through the frozen decoder) instead of in the latent.
    The settings default to our choices (:class:`DeblurDiff`); the empty prompt is one all-zero token.

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
        # our settings (DeblurDiff's docstring): the bundled files were trained and validated with them
        lkpn: str = "small", condition_range: str = "signed", posterior_sample: bool = False,
        colour_fix: str = "clamped", strength: float = 1.0, start: str = "zs", spacing: str = "leading",
        vae_mid_attention: bool = True, prior: str | None = None, clip_sample: float = 1.0,
        diffusion_weight: float = 1.0, lkpn_levels: int = 2, latent_t_min: int = 0, prior_digest: str | None = None,
        zs_loss: str = "latent",
    ):  # fmt: skip
        from unblur.methods.small_sd import build_on_vae, load_trained_prior
        from unblur.modelfile import weights_digest
        from unblur.zoo import COMPONENTS

        if prior:
            if vae:
                raise ValueError("give the VAE with model.vae or the prior with model.prior (which holds its VAE), not both")
            sd = load_trained_prior(
                prior, latent_channels=latent_channels, vae_widths=vae_widths, unet_widths=unet_widths,
                cross_attention_dim=cross_attention_dim, prediction_type=prediction_type,
                vae_mid_attention=vae_mid_attention, latent_scale=latent_scale,
            )  # fmt: skip
        else:
            sd = build_on_vae(vae, latent_channels, vae_widths, unet_widths, cross_attention_dim, prediction_type, vae_mid_attention)
        super().__init__(
            sd, kernel_size, lkpn_width, latent_weight, val_steps, latent_scale, sampler,
            lkpn, condition_range, posterior_sample, colour_fix, strength, start, spacing, diffusion_weight, lkpn_levels,
            latent_t_min, zs_loss,
        )  # fmt: skip
        self.unet.requires_grad_(train_unet and diffusion_weight > 0)
        self.schedule.clip = clip_sample  # as SmallPrior's: 1 as the bundled files were validated, 0 never clamps
        # a component stays where it is, named and checked; a path of this machine is not recorded (the weights are)
        self.frozen_elsewhere = bool(prior) and str(prior) in COMPONENTS and not any(p.requires_grad for p in self.unet.parameters())
        if self.frozen_elsewhere:
            digest = weights_digest(self.unet, self.vae)
            if prior_digest is not None and prior_digest != digest:
                raise ValueError(
                    f"this model was trained on another version of component '{prior}' (weights {prior_digest}, "
                    f"here {digest}): use the version it was trained on"
                )
            self.config["prior_digest"] = digest
        else:
            self.config.update(prior=None, prior_digest=None)


class DeblurDiffSD(DeblurDiff):
    """DeblurDiff on a user's Stable Diffusion 2.x folder (``arch: deblurdiff``; ``sd``: its path), as the authors
    train it: UNet and VAE frozen, ControlNet and LKPN trained. The settings default to the authors' (the
    module docstring): their LKPN (``lkpn: authors``, ``lkpn_width`` 128), the blurred image in [0, 1] and
    posterior samples, ancestral DDPM on their 50 respaced steps, AdaIN on the unclamped decode.

    The empty prompt (``empty_prompt``): ``"text_encoder"``, "" encoded by the folder's own tokenizer and text
    encoder (``tokenizer/``, ``text_encoder/``: CLIP's 77 tokens, as the authors condition); ``"zeros"``, one
    all-zero token (our fallback, which a frozen SD has never seen); ``"auto"``: the text encoder when the
    folder has one, else the zeros with a warning. It is computed once, on first use (or when the weights
    are first written), and stored in the model file, so using a trained model needs no text encoder.

    Model files hold the trained parts only (ControlNet, LKPN, the empty prompt: hundreds of MiB, not SD's
    gigabytes); the frozen parts are read from ``sd`` whenever the model is built, so a model file moves to
    another machine with ``unblur deblur --sd PATH`` pointing at that machine's copy of the same SD weights.
    Files written before these settings existed rebuild as they were trained (``file_defaults``: our small
    LKPN, [-1, 1] and modes, leading spacing, the clamped colour fix, the zero token).
    """

    EMPTY_PROMPTS = ("auto", "text_encoder", "zeros")
    file_defaults = {
        "lkpn": "small",
        "condition_range": "signed",
        "posterior_sample": False,
        "colour_fix": "clamped",
        "spacing": "leading",
        "empty_prompt": "zeros",
    }

    @register_to_config
    def __init__(
        self, sd: str, kernel_size: int = 5, lkpn_width: int = 128, latent_weight: float = 1.0, val_steps: int = 50,
        # the authors' settings (the class docstring), then ours for anchored sampling
        sampler: str = "ddpm", lkpn: str = "authors", condition_range: str = "unit", posterior_sample: bool = True,
        colour_fix: str = "unclamped", spacing: str = "linspace", empty_prompt: str = "auto",
        strength: float = 1.0, start: str = "zs",
    ):  # fmt: skip
        from unblur.methods.sd_loading import load_sd

        if empty_prompt not in self.EMPTY_PROMPTS:
            raise ValueError(f"empty_prompt must be one of {', '.join(self.EMPTY_PROMPTS)}, got {empty_prompt!r}")
        super().__init__(
            load_sd(sd), kernel_size, lkpn_width, latent_weight, val_steps, None, sampler,
            lkpn, condition_range, posterior_sample, colour_fix, strength, start, spacing,
        )  # fmt: skip
        self.sd_path, self.empty_prompt = sd, empty_prompt
        self.register_buffer("empty_context", None)  # (1, tokens, cross_attention_dim): from a model file, or on first use

    frozen_elsewhere = True  # SD's UNet and VAE are read from ``sd``

    def context(self, batch: int, device) -> torch.Tensor:
        """The empty prompt (``empty_prompt``), (B, tokens, cross_attention_dim)."""
        return self.prompt().to(device, self.unet.dtype).expand(batch, -1, -1)

    def prompt(self) -> torch.Tensor:
        """The empty prompt's embedding (1, tokens, cross_attention_dim), computed on first use."""
        if self.empty_context is None:
            self.empty_context = self._encode_empty_prompt().to(self.unet.device)
        return self.empty_context

    def _encode_empty_prompt(self) -> torch.Tensor:
        from unblur.methods.sd_loading import encode_empty_prompt, has_text_encoder

        width = self.unet.config.cross_attention_dim
        mode = self.empty_prompt
        if mode == "auto":
            mode = "text_encoder" if has_text_encoder(self.sd_path) else "zeros"
            if mode == "zeros":
                warnings.warn(
                    f"{self.sd_path} has no tokenizer/ and text_encoder/: the empty prompt is one all-zero token, "
                    "which Stable Diffusion was never trained with (set empty_prompt: zeros to silence this)",
                    stacklevel=3,
                )
        if mode == "zeros":
            return torch.zeros(1, 1, width)
        embedding = encode_empty_prompt(self.sd_path)
        if embedding.shape[-1] != width:
            raise ValueError(
                f"{self.sd_path}: the text encoder gives {embedding.shape[-1]} channels, the UNet attends to {width}"
            )
        return embedding

    def state_dict(self, *args, **kwargs):
        self.prompt()  # a model file always holds the empty prompt it was trained with
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Loads the trained parts and the empty prompt (a file without one was written before it was stored: the
        zero token it was trained with); the frozen parts stay as read from ``sd`` (and must not be in ``state_dict``)."""
        state = dict(state_dict)
        prompt = state.pop("empty_context", None)
        self.empty_context = (prompt if prompt is not None else torch.zeros(1, 1, self.unet.config.cross_attention_dim)).to(
            self.unet.device, torch.float32
        )
        result = super().load_state_dict(state, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith(self.FROZEN) and k != "empty_context"]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"DeblurDiff weights do not fit: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
        return result

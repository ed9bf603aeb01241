"""What DeblurDiff and BD-Diff share: a latent diffusion model (frozen VAE, UNet, noise schedule),
sampling of a latent (:mod:`unblur.diffusion.samplers`, chosen by name), whole or in blended tiles,
and the way from an input image to a result (pad, encode, render, decode, crop, colour fix).

Images are (B, 3, H, W) in [0, 1]; latents (B, C, H/f, W/f), scaled by ``scale`` so the diffusion
model sees about unit variance (Stable Diffusion: 0.18215; our small VAE: measured, see
``scripts/latent_scale.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unblur.diffusion.samplers import get_sampler
from unblur.methods.base import Callback, Method
from unblur.methods.sd_loading import LatentDiffusion
from unblur.nn.layers import eval_frozen, pad_to_multiple
from unblur.tiling import run_tiled


def adain_colour_fix(image: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give ``image`` the per-channel mean and standard deviation of ``reference`` (both (B, 3, H, W)):
    diffusion samples drift in colour; the input's colour statistics are right."""
    mu_i, sd_i = image.mean((2, 3), keepdim=True), image.std((2, 3), keepdim=True) + eps
    mu_r, sd_r = reference.mean((2, 3), keepdim=True), reference.std((2, 3), keepdim=True)
    return (image - mu_i) / sd_i * sd_r + mu_r


class LatentMethod(Method):
    """A generative method built on ``sd``: holds its ``unet``, ``vae`` (always frozen) and noise ``schedule``;
    ``sampler`` names its sampler (:data:`unblur.diffusion.samplers.SAMPLERS`: ``ddim``, ``ddpm``), ``val_steps``
    its number of sampling steps when none are asked for, ``spacing`` how the sampling timesteps are spaced
    (None: as the schedule has it; :meth:`~unblur.diffusion.schedules.NoiseSchedule.timesteps`).

    ``colour_fix``: the AdaIN colour fix on the decoded result ``"clamped"`` to [0, 1] first, or ``"unclamped"``
    (the raw decode; clamped after the fix). ``strength`` in (0, 1] and ``start`` (one of :attr:`anchors`):
    where sampling starts when no other is asked for (:meth:`render`; 1: from pure noise)."""

    generative = True
    low_precision = None  # fp32: the sampling steps compound rounding
    anchors = ("blurred",)
    COLOUR_FIXES = ("clamped", "unclamped")

    def __init__(
        self,
        sd: LatentDiffusion,
        latent_scale: float | None = None,
        val_steps: int = 20,
        sampler: str = "ddim",
        colour_fix: str = "clamped",
        strength: float = 1.0,
        start: str | None = None,
        spacing: str | None = None,
    ):
        super().__init__()
        self.unet, self.vae, self.schedule = sd.unet, sd.vae, sd.schedule
        self.scale = latent_scale or sd.scale
        self.val_steps, self.sampler = val_steps, get_sampler(sampler)
        if spacing is not None:
            self.schedule.spacing = spacing
        if colour_fix not in self.COLOUR_FIXES:
            raise ValueError(f"colour_fix must be one of {', '.join(self.COLOUR_FIXES)}, got {colour_fix!r}")
        self.colour_fix = colour_fix
        self.strength, self.start = self.anchoring(strength, start or self.anchors[0])
        self.vae.requires_grad_(False).eval()

    def anchoring(self, strength: float | None, start: str | None) -> tuple[float, str]:
        """(strength, start) checked, None meaning the method's own setting; ValueError in one line otherwise."""
        strength = self.strength if strength is None else float(strength)
        start = self.start if start is None else start
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength:g}")
        if start not in self.anchors:
            raise ValueError(f"start must be one of {', '.join(self.anchors)} for {type(self).__name__}, got {start!r}")
        return strength, start

    @property
    def default_steps(self) -> int:
        return self.val_steps

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            eval_frozen(self)  # frozen parts (the VAE, SD's UNet) stay in inference mode
        return self

    @property
    def factor(self) -> int:
        """Image pixels per latent pixel (the VAE's downsampling: 8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this: the VAE's and the UNet's downsampling together."""
        return self.factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode(self, image: torch.Tensor, tile: int = 0) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> scaled latent, the posterior's mode (deterministic). ``tile`` > 0
        (B = 1): in overlapping tiles of that many pixels, so memory does not grow with the image."""
        return self.encode_as(image, tile)

    @torch.no_grad()
    def encode_as(
        self,
        image: torch.Tensor,
        tile: int = 0,
        signed: bool = True,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """:meth:`encode` with the choices DeblurDiff's authors make differently: ``signed`` False hands the VAE the
        image as it is, in [0, 1], instead of mapped to [-1, 1]; ``sample`` draws the latent from the posterior
        (mean + std * noise from ``generator``, the global one when None) instead of taking its mode. Tiled, the
        posterior's mean and std are blended over the tiles and the noise drawn once for the whole latent."""
        if not self._tiled(image, tile):
            moments = self._moments(image, signed)
        else:
            size, overlap = self._tiles(tile)
            moments = run_tiled(lambda part: self._moments(part, signed), image, size, overlap, 1 / self.factor).to(image)
        mean, std = moments.chunk(2, 1)
        if sample:
            return mean + std * torch.randn(mean.shape, generator=generator).to(mean)
        return mean

    def _moments(self, image: torch.Tensor, signed: bool) -> torch.Tensor:
        """cat(mean, std) of the VAE's posterior for ``image``, scaled as latents are."""
        posterior = self.vae.encode(image * 2 - 1 if signed else image).latent_dist
        return torch.cat([posterior.mean * self.scale, posterior.std * self.scale], 1)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, tile: int = 0, clamp: bool = True) -> torch.Tensor:
        """Scaled latent -> (B, 3, H, W) in [0, 1] (``clamp`` False: the VAE's raw output, mapped as if it were in
        [-1, 1], so it may leave [0, 1]); ``tile`` in image pixels as for :meth:`encode`."""
        if not self._tiled(latent, tile and tile // self.factor):
            image = (self.vae.decode(latent / self.scale).sample + 1) / 2
            return image.clamp(0, 1) if clamp else image
        tile, overlap = (n // self.factor for n in self._tiles(tile))
        return run_tiled(lambda part: self.decode(part, clamp=clamp), latent, tile, overlap, self.factor).to(latent)

    def _tiles(self, tile: int) -> tuple[int, int]:
        """(tile, overlap) in image pixels: tiles the UNet can take whole, overlapping by a quarter."""
        tile = max(self.multiple, tile // self.multiple * self.multiple)
        return tile, tile // 4 // self.factor * self.factor

    @staticmethod
    def _tiled(x: torch.Tensor, tile: int) -> bool:
        if tile > 0 and max(x.shape[-2:]) > tile:
            if x.shape[0] != 1:
                raise ValueError("tiled sampling takes one image at a time")
            return True
        return False

    # -- training -------------------------------------------------------------------------------
    def noisy(self, z0: torch.Tensor, t_max: int | None = None, generator: torch.Generator | None = None, t_min: int = 0):
        """Noise and timesteps t in [t_min, t_max) (default: the whole schedule) drawn on the CPU generator
        (the engine seeds and checkpoints the global one): returns (z_t, noise, t)."""
        noise = torch.randn(z0.shape, generator=generator).to(z0)
        t = torch.randint(t_min, t_max or self.schedule.num_train_timesteps, (z0.shape[0],), generator=generator)
        t = t.to(z0.device)
        return self.schedule.add_noise(z0, noise, t), noise, t

    # -- sampling -------------------------------------------------------------------------------
    def predictor(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The UNet's prediction ``predict(t, u)`` for ``u = cat(z_t, z_cond)``, z_cond the encoded input (of a
        region, or all): what :meth:`render` asks for to deblur."""
        raise NotImplementedError

    def kernel_picture(self, z: torch.Tensor, z_cond: torch.Tensor, size: tuple[int, int], tile: int) -> torch.Tensor:
        """A picture of the blur kernels behind the final latent ``z`` (``predicts_kernels`` methods), (B, 3, H, W)."""
        raise NotImplementedError

    def condition(self, x: torch.Tensor, tile: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        """z_cond, the encoded input as :meth:`predictor` takes it, for the padded image ``x``: its latent (:meth:`encode`)."""
        return self.encode(x, tile)

    def anchor(
        self, start: str, x: torch.Tensor, z_cond: torch.Tensor, noise: torch.Tensor, steps: int, tile: int = 0
    ) -> torch.Tensor:
        """The clean latent that sampling from ``start`` noises and starts from (:meth:`render`): ``"blurred"``, the
        input's latent. ``x``: the padded input, ``z_cond`` its :meth:`condition`, ``noise`` the seed's start noise."""
        if start == "blurred":
            return self.encode(x, tile)
        raise ValueError(f"start must be one of {', '.join(self.anchors)} for {type(self).__name__}, got {start!r}")

    @torch.no_grad()
    def sample(self, blurred, steps, generator=None, tile=0, callback=None, kernels=False, strength=None, start=None):
        """The contract's :meth:`~unblur.methods.base.Method.sample`: deblur (B, 3, H, W) in [0, 1], any size
        (:meth:`render_image`), with the :meth:`predictor` and ``steps`` steps of the method's sampler;
        deterministic for a generator seed; ``tile`` > 0 (B = 1): VAE and UNet on overlapping tiles.
        ``strength``, ``start``: where sampling starts (:meth:`render`; None: the method's setting)."""
        if kernels and not self.predicts_kernels:
            raise ValueError(f"{type(self).__name__} predicts no blur kernels")
        strength, start = self.anchoring(strength, start)
        image, z, z_cond = self.render_image(blurred, self.predictor(), steps, generator, tile, callback, strength, start)
        return (image, self.kernel_picture(z, z_cond, blurred.shape[-2:], tile)) if kernels else image

    @torch.no_grad()
    def render_image(
        self,
        image: torch.Tensor,
        predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        steps: int,
        generator: torch.Generator | None = None,
        tile: int = 0,
        callback: Callback | None = None,
        strength: float = 1.0,
        start: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A new image conditioned on ``image`` (B, 3, H, W) in [0, 1], any size: padded to :attr:`multiple`,
        encoded into z_cond (:meth:`condition`), a latent rendered (:meth:`render` with ``predict``; from noise,
        or with ``strength`` < 1 from the noised :meth:`anchor` ``start``), decoded, cropped back and given
        ``image``'s colour statistics (:func:`adain_colour_fix`, on the decode clamped or not: ``colour_fix``).

        Returns (result (B, 3, H, W) in [0, 1], the final latent, z_cond), the latents at the padded size.
        """
        x, (h, w) = pad_to_multiple(image, self.multiple)
        z_cond = self.condition(x, tile, generator)
        anchor = None
        if strength < 1:
            anchor = lambda noise: self.anchor(start or self.start, x, z_cond, noise, steps, tile)  # noqa: E731
        z = self.render(z_cond, predict, steps, generator, tile, callback, strength, anchor)
        decoded = self.decode(z, tile, clamp=self.colour_fix == "clamped")[..., :h, :w]
        return adain_colour_fix(decoded, image).clamp(0, 1), z, z_cond

    @torch.no_grad()
    def render(
        self,
        z_cond: torch.Tensor,
        predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        steps: int,
        generator: torch.Generator | None = None,
        tile: int = 0,
        callback: Callback | None = None,
        strength: float = 1.0,
        anchor: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """A latent the size of ``z_cond`` (B, C, h, w), from noise in ``steps`` steps of the method's sampler.

        ``predict(t, u)`` is the UNet's prediction for ``u = cat(z_t, z_cond)`` of a region (or all).
        ``tile`` > 0 (image pixels, B = 1): the UNet predicts on overlapping latent tiles whose
        predictions are blended before every sampler step, so one coherent latent is denoised
        (tiles never drift apart) while memory depends on the tile only.

        Anchored sampling (our design, SDEdit-style): with ``strength`` < 1 and ``anchor(noise)`` giving a clean
        latent, only the last n = round(strength * steps) steps run (at least one), starting from that latent
        noised to the timestep of the first of them with the seed's start noise. Strength 1 (or n = steps) is
        sampling from pure noise, the same latent as without an anchor.
        """
        noise = torch.randn(z_cond.shape, generator=generator).to(z_cond)
        skip = steps - max(1, int(strength * steps + 0.5)) if anchor is not None else 0
        z = noise
        if skip:
            t = torch.full((len(noise),), self.schedule.timesteps(steps)[skip][0], device=noise.device)
            z = self.schedule.add_noise(anchor(noise), noise, t)

        def blended(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.over_latent(lambda part: predict(t, part), torch.cat([z_t, z_cond], 1), tile)

        return self.sampler(blended, z, self.schedule, steps, generator, callback, skip=skip)

    def over_latent(self, fn: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor, tile: int = 0) -> torch.Tensor:
        """``fn`` over the latent-sized ``u`` (B, ., h, w): whole, or (``tile`` > 0 image pixels, B = 1) over
        overlapping latent tiles the UNet can take, blended."""
        if not self._tiled(u, tile and tile // self.factor):
            return fn(u)
        tile, overlap = (n // self.factor for n in self._tiles(tile))
        return run_tiled(fn, u, tile, overlap).to(u)

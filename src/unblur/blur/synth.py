"""Synthetic blurred/sharp pairs: presets that turn a sharp photo into ``(blurred, sharp, metadata)``.

- ``uniform-kernel``: one camera-shake kernel per image, applied in linear light (gamma 2.2),
  Gaussian noise on the stored values, 8-bit quantisation (how ``val_uniform`` is made).
- ``camera-shake``: a smooth 6-DoF hand shake integrated over 9-17 sub-frames in linear light
  (spatially varying blur: roll and perspective), Gaussian noise, 8 bits.
- ``gopro-like``: 7-13 sub-frames of a faster shake through the sRGB curve, no added noise;
  the sharp target is the middle sub-frame, as in GoPro, and half of the images have an
  object that moves by itself (GoPro's scenes are streets with people in them).
- ``realistic``: camera-shake plus what real cameras add (RSBlur): highlights brighter than the
  sensor clipped after integration, Poisson-Gaussian noise in linear light, JPEG at 70-95.
- ``real-world``: a weighted mixture for a default model that meets any photo: the presets above,
  large (60+ px) and slight shake, low light with light streaks, camera responses of gamma 1.8-2.6,
  and sharp photos that must come back unchanged (:func:`real_world` gives the weights).

Every preset has ``make(sharp, rng) -> (blurred, sharp, meta)`` on float32 (H, W, 3) images
in [0, 1] and a ``margin`` (pixels of context a crop needs around it); ``uniform-kernel``
also renders whole batches at once (``sample`` + ``render``), which training uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from unblur.blur.camera import gamma_to_linear, linear_to_gamma
from unblur.blur.kernels import embed, motion_path, partial_kernels, path_kernel


def convolve(x: torch.Tensor, kernels: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Convolve each image of a batch with its own kernel.

    x: (B, C, H, W); kernels: (B, k, k) with k odd, or (k, k) for all.
    padding: ``"valid"`` returns (B, C, H - k + 1, W - k + 1) with no border
    assumption; ``"reflect"``/``"replicate"``/``"circular"`` keep (H, W).
    A true convolution (kernel flipped), as in the formation model B = k * S.
    """
    b, c = x.shape[:2]
    if kernels.dim() == 2:
        kernels = kernels.expand(b, -1, -1)
    k = kernels.shape[-1]
    if padding != "valid":
        p = k // 2
        x = F.pad(x, (p, p, p, p), mode=padding)
    weight = kernels.flip(-1, -2).to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), weight, groups=b * c)
    return out.reshape(b, c, *out.shape[-2:])


@dataclass(frozen=True)
class UniformKernelBlur:
    """One random-walk motion kernel per image, in linear light, plus noise and 8-bit quantisation."""

    min_kernel: int = 9
    max_kernel: int = 25
    max_noise: float = 0.01
    gamma: float = 2.2
    quantise_bits: int | None = 8

    @property
    def margin(self) -> int:
        return self.max_kernel // 2

    def make(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        """Blur one whole image (borders reflected); ``meta`` holds the kernel at its true size and the noise level."""
        draw = self.sample(rng)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        x = torch.from_numpy(np.ascontiguousarray(sharp.transpose(2, 0, 1)))[None]
        out = self.render(x, torch.from_numpy(draw["kernel"])[None], torch.tensor([draw["noise_sigma"]]), generator=gen)
        o = (self.max_kernel - draw["size"]) // 2
        kernel = draw["kernel"][o : o + draw["size"], o : o + draw["size"]]
        return (
            out[0].permute(1, 2, 0).numpy(),
            sharp,
            {"preset": "uniform-kernel", "kernel": kernel, "noise_sigma": draw["noise_sigma"]},
        )

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw the blur of one image: ``kernel`` ((max_kernel, max_kernel) float32), ``size``, ``noise_sigma``,
        and ``path``, the kernel's camera path ((N, 2), see :func:`unblur.blur.kernels.motion_path`)."""
        size = int(rng.choice(np.arange(self.min_kernel, self.max_kernel + 1, 2)))
        path = motion_path(size, rng)
        kernel = embed(path_kernel(path, size), self.max_kernel)  # motion_kernel(size, rng), keeping its path
        return {"kernel": kernel, "size": size, "noise_sigma": float(rng.uniform(0, self.max_noise)), "path": path}

    def expose(self, sharp: torch.Tensor, kernels: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
        """The blur alone, no noise: each (B, 3, H, W) stored image in [0, 1] convolved with its kernel
        ((B, k, k)) in linear light. Returns (B, 3, H', W') in [0, 1], H' as for :meth:`render`."""
        return linear_to_gamma(convolve(gamma_to_linear(sharp, self.gamma), kernels, padding), self.gamma)

    def partial_exposures(self, sharp: torch.Tensor, paths: list, fractions, padding: str = "reflect") -> torch.Tensor:
        """Each image exposed over the first ``fractions`` of its kernel's path (BlurDM's exposure targets).

        sharp: (B, 3, H, W) stored images in [0, 1]; paths: B camera paths from :meth:`sample`;
        fractions: n values in [0, 1] (:func:`unblur.blur.kernels.partial_kernels`: 0 = the sharp
        image, 1 = the blur of :meth:`render` before its noise and quantisation).
        Returns (B, n, 3, H', W') in [0, 1], noise-free.
        """
        kernels = torch.from_numpy(np.stack([partial_kernels(p, self.max_kernel, fractions) for p in paths]))
        n = kernels.shape[1]
        out = self.expose(sharp.repeat_interleave(n, dim=0), kernels.flatten(0, 1), padding)
        return out.unflatten(0, (sharp.shape[0], n))

    def render(
        self,
        sharp: torch.Tensor,
        kernels: torch.Tensor,
        noise_sigma: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        padding: str = "reflect",
    ) -> torch.Tensor:
        """Blur a batch of stored (gamma-encoded) images in [0, 1].

        sharp: (B, 3, H, W); kernels: (B, k, k); noise_sigma: (B,); ``generator``: one for the
        batch's noise, or one per image (an image's noise then does not depend on its batch).
        Returns (B, 3, H', W') in [0, 1]; H' = H - k + 1 with ``padding="valid"``, else H.
        """
        blurred = self.expose(sharp, kernels, padding)
        if isinstance(generator, list):
            noise = torch.stack([torch.randn(blurred.shape[1:], generator=g, dtype=blurred.dtype) for g in generator])
        else:
            noise = torch.randn(blurred.shape, generator=generator, dtype=blurred.dtype)
        blurred = (blurred + noise.to(blurred.device) * noise_sigma.view(-1, 1, 1, 1).to(blurred)).clamp(0, 1)
        if self.quantise_bits:
            top = 2**self.quantise_bits - 1
            blurred = torch.round(blurred * top) / top
        return blurred


@dataclass(frozen=True)
class ExposureBlur:
    """Blur by integrating warped sub-frames along a 6-DoF camera path (see the module docstring)."""

    name: str = "camera-shake"
    subframes: tuple[int, int] = (9, 17)
    rotation_deg: float = 0.6  # peak-to-peak pitch/yaw: 0.6° at a focal length of 2000 px is 21 px of motion
    roll_deg: float = 0.4
    translation: float = 0.0
    response: str = "gamma"  # or "srgb"
    max_noise: float = 0.01  # Gaussian, on stored values
    gain: tuple[float, float] = (1.0, 1.0)  # highlight brightening before the sensor clips
    shot_read: tuple[float, float] | None = None  # Poisson-Gaussian noise in linear light (max shot, max read)
    jpeg: tuple[int, int] | None = None
    focal_px: tuple[float, float] = (800.0, 2000.0)  # phone/compact photos of 1-2 kilopixels
    sharp_at: float = 0.5  # which sub-frame is the sharp target: 0.5 the middle (GoPro), 0 the first
    moving_object: float = 0.0  # probability of an object moving by itself (see exposure.MovingObject)
    margin: int = 32
    # the following are drawn only when set, so the presets above keep their seeds' pairs
    gamma: tuple[float, float] | None = None  # response "gamma": exponent drawn per image (None: 2.2)
    off_centre: float = 0.0  # principal point up to this many pixels off the crop's centre, per axis

    def make(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        from unblur.blur.camera import jpeg, linear_to_srgb, poisson_gaussian_noise, saturate, srgb_to_linear
        from unblur.blur.exposure import expose, random_object, sharp_frame
        from unblur.blur.trajectory import camera_path, homographies

        h, w = sharp.shape[:2]
        n = int(rng.integers(self.subframes[0], self.subframes[1] + 1))
        ref = round(self.sharp_at * (n - 1))
        path = camera_path(rng, n, self.rotation_deg, self.roll_deg, self.translation, self.sharp_at)
        # in pixels, not relative to the image, so that a training crop blurs like the photo it came from
        focal = float(rng.uniform(*self.focal_px))
        centre = None
        if self.off_centre:  # a crop from anywhere in a larger photo: roll and tilt blur it unevenly
            centre = ((w - 1) / 2 + rng.uniform(-1, 1) * self.off_centre, (h - 1) / 2 + rng.uniform(-1, 1) * self.off_centre)
        hs = homographies(path, w, h, focal=focal, centre=centre)
        # drawn only when enabled, so presets without objects keep their seeds' pairs
        obj = random_object(rng, h, w, n, ref) if self.moving_object and rng.random() < self.moving_object else None
        decode, encode = (srgb_to_linear, linear_to_srgb) if self.response == "srgb" else (gamma_to_linear, linear_to_gamma)
        if self.gamma and self.response != "srgb":
            g = float(rng.uniform(*self.gamma))
            decode, encode = partial(gamma_to_linear, gamma=g), partial(linear_to_gamma, gamma=g)
        lin = decode(torch.from_numpy(sharp)).numpy()
        blurred = torch.from_numpy(expose(lin, hs, obj))
        gain = float(rng.uniform(*self.gain))
        target = saturate(torch.from_numpy(lin if obj is None else sharp_frame(lin, hs, ref, obj)), gain)
        blurred = saturate(blurred, gain)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        meta = {
            "preset": self.name,
            "subframes": n,
            "focal": focal,
            "gain": gain,
            "rotations": path.rotations.tolist(),
            "translations": path.translations.tolist(),
            "sharp_index": ref,
        }
        if centre is not None:
            meta["centre"] = list(centre)
        if self.gamma and self.response != "srgb":
            meta["gamma"] = g
        if obj is not None:
            meta["object_shift"] = (obj.shifts[-1] - obj.shifts[0]).tolist()  # pixels over the exposure
        if self.shot_read:
            shot, read = float(rng.uniform(0, self.shot_read[0])), float(rng.uniform(0, self.shot_read[1]))
            blurred = poisson_gaussian_noise(blurred, shot, read, gen)
            meta.update(shot=shot, read=read)
        out = encode(blurred)
        if self.max_noise:
            sigma = float(rng.uniform(0, self.max_noise))
            out = (out + sigma * torch.randn(out.shape, generator=gen)).clamp(0, 1)
            meta["noise_sigma"] = sigma
        out = torch.round(out * 255) / 255
        if self.jpeg:
            quality = int(rng.integers(self.jpeg[0], self.jpeg[1] + 1))
            out = jpeg(out.permute(2, 0, 1), quality).permute(1, 2, 0)
            meta["jpeg_quality"] = quality
        return out.numpy().astype(np.float32), encode(target).numpy().astype(np.float32), meta


@dataclass(frozen=True)
class NoBlur:
    """A sharp photo as it is: the input is the target, which a restorer must return unchanged."""

    name: str = "sharp"
    margin: int = 0

    def make(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        return sharp, sharp, {"preset": self.name}


@dataclass(frozen=True)
class Mixture:
    """One of several presets per image, drawn with the given weights (``parts``: (weight, spec) pairs)."""

    name: str
    parts: tuple

    @property
    def margin(self) -> int:
        return max(spec.margin for _, spec in self.parts)

    def make(self, sharp: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        weights = np.array([w for w, _ in self.parts], dtype=np.float64)
        spec = self.parts[int(rng.choice(len(self.parts), p=weights / weights.sum()))][1]
        blurred, target, meta = spec.make(sharp, rng)
        return blurred, target, {**meta, "mixture": self.name}


def realistic() -> ExposureBlur:
    """Camera shake plus what real cameras add; ``val_realistic`` is made with this preset."""
    return ExposureBlur(name="realistic", gain=(1.0, 2.5), shot_read=(0.01, 0.01), max_noise=0.0, jpeg=(70, 95))


def real_world() -> Mixture:
    """What people bring to a deblurring tool: every blur from none to over 60 px, and the camera around it.

    Weights (of images): 40 % ``realistic`` (6-DoF shake of roughly 5-30 px, clipped highlights,
    Poisson-Gaussian noise, JPEG 70-95); 30 % ``uniform-kernel`` (one 9-25 px kernel); 10 % ``gopro-like``
    (frames of a faster shake averaged through the sRGB curve, half with an object moving by itself);
    6 % large shake (pitch/yaw up to 1.8 deg peak to peak: 15-60+ px at phone focal lengths, roll up to
    0.8 deg about a principal point anywhere within 400 px, 33-49 sub-frames so long paths stay continuous,
    gain up to 3, a camera response of gamma 1.8-2.6, JPEG 75-95); 5 % low light (highlights brightened
    up to 4x and clipped after integration, which makes light streaks, strong shot and read noise, JPEG
    70-92); 5 % slight shake (0.15 deg, a few pixels, mild noise, JPEG 85-98); 4 % sharp photos
    returned as they are (:class:`NoBlur`), so that a good photo comes back unchanged.

    Version 3 of these weights. Version 1 (commit b2b9276) had 30 / 20 / 10 / 10 / 10 / 8 / 12 %: after
    2500 steps from ``nafnet-small-realistic`` it returned sharp photos at 47.2 dB (worst 37.0; we ask 36)
    while it lagged on uniform blur (26.88 dB on ``val_uniform``), so sharp and rare parts gave way to the
    two kinds of shake every photo tool meets most. Version 2 (34 / 26 / 10 / 8 / 8 / 8 / 6 %, the
    default's link 2) returned sharp photos at 48.5 dB (worst 39.3) and still lagged on both kinds of
    shake, so version 3 moves another 10 % from the rare parts and the sharp share to those two.
    """
    large = ExposureBlur(
        name="large-shake",
        subframes=(33, 49),
        rotation_deg=1.8,
        roll_deg=0.8,
        gain=(1.0, 3.0),
        shot_read=(0.01, 0.01),
        max_noise=0.0,
        jpeg=(75, 95),
        margin=48,
        gamma=(1.8, 2.6),
        off_centre=400.0,
    )
    low_light = ExposureBlur(
        name="low-light",
        rotation_deg=0.8,
        roll_deg=0.5,
        gain=(1.5, 4.0),
        shot_read=(0.03, 0.02),
        max_noise=0.0,
        jpeg=(70, 92),
        gamma=(1.8, 2.6),
        off_centre=300.0,
    )
    slight = ExposureBlur(
        name="slight-shake",
        subframes=(5, 9),
        rotation_deg=0.15,
        roll_deg=0.1,
        gain=(1.0, 1.5),
        shot_read=(0.005, 0.005),
        max_noise=0.0,
        jpeg=(85, 98),
    )
    parts = (
        (0.40, realistic()),
        (0.30, UniformKernelBlur()),
        (0.10, PRESETS["gopro-like"]()),
        (0.06, large),
        (0.05, low_light),
        (0.05, slight),
        (0.04, NoBlur()),
    )
    return Mixture("real-world", parts)


PRESETS = {
    "uniform-kernel": UniformKernelBlur,
    "camera-shake": ExposureBlur,
    "gopro-like": lambda: ExposureBlur(
        name="gopro-like",
        subframes=(7, 13),
        rotation_deg=0.8,
        roll_deg=0.5,
        translation=0.01,
        response="srgb",
        max_noise=0.0,
        moving_object=0.5,
    ),
    "realistic": realistic,
}
PRESETS["real-world"] = real_world  # a mixture of the presets above (and more): defined after them


def blur_image(sharp: np.ndarray, rng: np.random.Generator, preset: str = "uniform-kernel") -> tuple[np.ndarray, dict]:
    """Blur one whole image: sharp float32 (H, W, 3) in [0, 1] -> (blurred (H, W, 3), metadata).

    For presets that change the sharp target too (saturation), use ``PRESETS[name]().make``.
    """
    blurred, _, meta = PRESETS[preset]().make(sharp, rng)
    return blurred, meta

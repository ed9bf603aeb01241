"""DeblurDiff core (Zou et al., 2025, "DeblurDiff: Real-World Image Deblurring with Generative Diffusion Models").

DeblurDiff guides a latent diffusion model (Stable Diffusion + ControlNet) with a latent that is
re-estimated at every sampling step instead of the fixed blurred latent:

* LKPN, the latent kernel prediction network, is a UNet that reads cat(z_blur, z_t) and the timestep t
  and predicts one k x k kernel per latent pixel and per latent channel (C * k * k output channels, not
  normalised, so the kernels may sharpen, i.e. have negative taps). Two of them here: :class:`LKPN`, our
  small two-level convolutional UNet, and :class:`AuthorsLKPN`, the authors' layout (a Stable-Diffusion-style
  UNet that also attends to the text context).
* EAC, element-wise adaptive convolution, applies those kernels to the blurred latent as a residual:
  z_s = z_blur + sum_{u,v} K[c, u, v, i, j] * z_blur[c, i + u - k//2, j + v - k//2]  (zero outside).
* The ControlNet condition is cat(z_blur, z_s); since z_t gets sharper along the reverse process,
  the kernels (and z_s) are predicted again at every step.

The authors ship EAC as a CUDA extension (fp32 only); :func:`eac` here is pure PyTorch, runs on any
device and dtype, and is differentiable in both arguments.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from unblur.nn.configurable import register_to_config
from unblur.nn.layers import pad_to_multiple


def eac(z_blur: torch.Tensor, kernels: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Element-wise adaptive convolution: z_blur plus z_blur filtered by a different kernel at every pixel.

    z_blur: (B, C, H, W), any real dtype. kernels: (B, C*k*k, H, W), any real values.
    Layout of ``kernels`` (channel-major, the order of ``F.unfold``): channel ``c*k*k + u*k + v`` holds
    tap (u, v), u = kernel row, v = kernel column, both in [0, k); tap (u, v) multiplies
    z_blur[c, i + u - k//2, j + v - k//2]. So (u, v) = (0, 0) is the top-left tap (offset (-k//2, -k//2))
    and the centre tap (offset (0, 0)) is (u, v) = (k//2, k//2). Pixels outside the latent count as zero.
    Returns z_s, (B, C, H, W), in z_blur's dtype; all-zero kernels return z_blur exactly.
    """
    if k % 2 != 1:
        raise ValueError(f"k must be odd, got {k}")
    b, c, h, w = z_blur.shape
    if kernels.shape != (b, c * k * k, h, w):
        raise ValueError(f"kernels must have shape {(b, c * k * k, h, w)}, got {tuple(kernels.shape)}")
    r = k // 2
    # An explicit loop over the k*k shifts rather than F.unfold: unfold materialises a (B, C*k*k, H*W)
    # tensor, k*k = 25 times the latent (and its product with the kernels is another one), while the loop
    # only ever holds the padded latent, the accumulator and one latent-sized product per shift.
    padded = F.pad(z_blur, (r, r, r, r))
    taps = kernels.view(b, c, k, k, h, w)  # a view: no copy of the kernels
    # Accumulate in at least float32 so 25 half-precision terms do not lose the small residual;
    # copy=True also keeps the in-place additions off z_blur itself when it is already float32.
    acc = z_blur.to(torch.promote_types(z_blur.dtype, torch.float32), copy=True)
    for u in range(k):
        for v in range(k):
            acc += taps[:, :, u, v] * padded[:, :, u : u + h, v : v + w]
    return acc.to(z_blur.dtype)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps (as in DDPM / Stable Diffusion, cos half first).

    t: (B,) integer or real timesteps (typically in [0, 1000)). Returns (B, dim) float32 in [-1, 1].
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))  # odd dim: one zero column


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


class TimeResBlock(nn.Module):
    """Norm -> SiLU -> 3x3 conv, plus the projected timestep embedding, twice, with a residual connection."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int):
        super().__init__()
        self.conv1 = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.temb = nn.Sequential(nn.SiLU(), nn.Linear(temb_dim, c_out))
        self.conv2 = nn.Sequential(_norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x) + self.temb(temb)[:, :, None, None]  # the timestep enters every block
        return self.skip(x) + self.conv2(y)


class LKPN(nn.Module):
    """Latent kernel prediction network: a small timestep-conditioned UNet.

    latent_channels: C (4 for Stable Diffusion). width: channels at full latent resolution, doubled at
    each of the ``levels`` downsamplings. kernel_size: k (odd). Output: (B, C*k*k, H, W) raw kernels in
    the layout of :func:`eac`; the last convolution starts at zero so a fresh LKPN leaves z_blur unchanged.
    """

    @register_to_config
    def __init__(self, latent_channels: int = 4, width: int = 64, kernel_size: int = 5, levels: int = 2):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        temb_dim = 4 * width
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.intro = nn.Conv2d(2 * latent_channels, width, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        c = width
        for _ in range(levels):
            self.encoders.append(TimeResBlock(c, c, temb_dim))
            self.downs.append(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1))
            c *= 2
        self.middle = TimeResBlock(c, c, temb_dim)
        for _ in range(levels):
            self.ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 3, padding=1)))
            c //= 2
            self.decoders.append(TimeResBlock(2 * c, c, temb_dim))  # input: upsampled + skip, concatenated
        self.ending = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, latent_channels * kernel_size**2, 3, padding=1))
        # zero kernels => z_s = z_blur: training starts from the plain blurred-latent condition
        nn.init.zeros_(self.ending[-1].weight)
        nn.init.zeros_(self.ending[-1].bias)
        self.multiple = 2**levels

    def forward(
        self, z_blur: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor | float, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z_blur, z_t: (B, C, H, W) latents, any H, W; t: (B,) or scalar timestep; ``context`` (the text context)
        is not used. Returns (B, C*k*k, H, W)."""
        t = torch.as_tensor(t, device=z_blur.device).reshape(-1).expand(z_blur.shape[0])
        temb = self.time_mlp(timestep_embedding(t, self.width).to(self.intro.weight.dtype))
        x, (h, w) = pad_to_multiple(torch.cat([z_blur, z_t], dim=1), self.multiple)
        y = self.intro(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            y = enc(y, temb)
            skips.append(y)
            y = down(y)
        y = self.middle(y, temb)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            y = dec(torch.cat([up(y), skip], dim=1), temb)
        return self.ending(y)[..., :h, :w]


class AuthorsLKPN(nn.Module):
    """The LKPN at the authors' layout: a Stable-Diffusion-style UNet (diffusers' ``UNet2DConditionModel``) on
    cat(z_blur, z_t) with the timestep and cross-attention to the text context. Their ``model/lkpn.py``
    (``LKPN.__init__``) builds it with 128 channels, multipliers [1, 2, 4, 4], 2 residual blocks per level,
    attention (a linear-projection transformer of depth 1, 64 channels per head) at the first three
    levels and in the middle, the text context of SD 2.1 (1024 wide), and an output convolution that
    starts at zero (their ``model/unet.py``, ``UNetModel``: ``zero_module``), so a fresh one leaves
    z_blur unchanged, as ours does.

    ``width``: the channels of the first level (128 as the authors; a small one for tests);
    ``context_dim``: the text context's width (the denoising UNet's ``cross_attention_dim``).
    """

    MULTIPLIERS = (1, 2, 4, 4)

    @register_to_config
    def __init__(self, latent_channels: int = 4, width: int = 128, kernel_size: int = 5, context_dim: int = 1024):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        from unblur.methods.sd_loading import require_diffusers

        widths = tuple(width * m for m in self.MULTIPLIERS)
        self.unet = require_diffusers().UNet2DConditionModel(
            in_channels=2 * latent_channels,
            out_channels=latent_channels * kernel_size**2,
            block_out_channels=widths,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            layers_per_block=2,
            cross_attention_dim=context_dim,
            # diffusers' attention_head_dim is the number of heads here: 64 channels per head, as the authors
            attention_head_dim=tuple(max(1, c // 64) for c in widths),
            use_linear_projection=True,
            norm_num_groups=math.gcd(32, width),
        )
        nn.init.zeros_(self.unet.conv_out.weight)
        nn.init.zeros_(self.unet.conv_out.bias)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(
        self, z_blur: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor | float, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """As :meth:`LKPN.forward`; ``context`` (B, tokens, context_dim): the text context the UNet attends to."""
        if context is None:
            raise ValueError("the authors' LKPN attends to the text context: pass context")
        t = torch.as_tensor(t, device=z_blur.device).reshape(-1).expand(z_blur.shape[0])
        x, (h, w) = pad_to_multiple(torch.cat([z_blur, z_t], dim=1), self.multiple)
        return self.unet(x, t, context.expand(len(x), -1, -1)).sample[..., :h, :w]


#: the LKPNs a DeblurDiff model may have (its ``lkpn`` setting)
LKPNS = ("small", "authors")

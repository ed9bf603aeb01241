"""FFTformer (Kong et al., "Efficient Frequency Domain-based Transformers for High-Quality Image Deblurring", CVPR 2023),
written from the paper.

A U-Net of transformer blocks whose two halves are both computed in the Fourier domain,
over non-overlapping ``patch x patch`` tiles of the feature map:

* FSAS, the frequency-domain self-attention solver: instead of a dot-product attention
  matrix, query and key are multiplied in the Fourier domain of each tile (by the
  correlation theorem, the product of their spectra is their correlation over the tile,
  i.e. every query/key pair of the tile at once). The result is layer-normalised and
  gates the value;
* DFFN, the discriminative frequency-domain FFN: a gated depthwise-conv FFN whose
  hidden features are first filtered by a learned gate on the FFT coefficients of each
  tile (one weight per channel and frequency, like a learned JPEG quantisation table),
  so the network decides which low and high frequencies to keep.

The network is asymmetric: encoder blocks are DFFN only, FSAS is used in the decoder
blocks and the refinement stage after the decoder. Three levels (width, 2x, 4x
channels); downsampling is bilinear x0.5 + conv, upsampling bilinear x2 + conv, and
each decoder level merges its skip with a small fusion block (conv, DFFN block, conv,
sum of both halves). The network predicts the residual to the input. Input and output
are RGB in [0, 1], shape (B, 3, H, W); the input is padded by reflection to a multiple
of ``2**(levels - 1) * patch`` (every level must tile into patches) and the output
cropped back.

With ``prior_dim > 0`` a prior vector modulates every decoder and refinement block, the
blocks with FSAS (BlurDM's fusion, see :class:`unblur.nn.layers.PriorModulation`).
``prior_at="input"``: as the BlurDM authors do (github.com/Jin-Ting-He/BlurDM,
src/FFTformer/models/FFTformerBlurDM.py, ``FSAS`` lines 167-176, called from
``TransformerBlock.forward`` line 221 with norm1 applied), x * k + v on FSAS's input after the
block's first LayerNorm, inside the attention branch; Linear without bias (``bias=False``, line 295).
``prior_at="output"``: our first version (the block's output, Linear with bias), kept for the
model files trained with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unblur.nn.configurable import register_to_config
from unblur.nn.layers import LayerNorm2d, check_prior_options, crop_to, pad_to_multiple, prior_modulations, run_modulated


def patch_rfft(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) with H, W multiples of p -> complex (B, C, H/p, W/p, p, p//2 + 1): rfft2 of every p x p tile.

    Computed in float32: half-precision FFTs are inaccurate (and limited to powers of two on GPU).
    """
    b, c, h, w = x.shape
    tiles = x.float().reshape(b, c, h // p, p, w // p, p).transpose(3, 4)
    return torch.fft.rfft2(tiles)


def patch_irfft(spec: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`patch_rfft`: back to (B, C, H, W) in ``dtype``."""
    b, c, nh, nw, p, _ = spec.shape
    tiles = torch.fft.irfft2(spec, s=(p, p))
    return tiles.transpose(3, 4).reshape(b, c, nh * p, nw * p).to(dtype)


class DFFN(nn.Module):
    """Discriminative frequency-domain FFN: 1x1 in -> learned gate on tile spectra -> depthwise 3x3 -> GELU gate -> 1x1 out."""

    def __init__(self, c: int, expand: float, patch: int):
        super().__init__()
        hidden = int(c * expand)
        self.patch = patch
        self.project_in = nn.Conv2d(c, 2 * hidden, 1, bias=False)
        # one weight per channel and frequency, shared by all tiles; starts as the identity filter
        self.freq_gate = nn.Parameter(torch.ones(2 * hidden, 1, 1, patch, patch // 2 + 1))
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.project_out = nn.Conv2d(hidden, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project_in(x)
        with torch.autocast(y.device.type, enabled=False):
            y = patch_irfft(patch_rfft(y, self.patch) * self.freq_gate.float(), y.dtype)
        a, b = self.dwconv(y).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class FSAS(nn.Module):
    """Frequency-domain self-attention: value * LayerNorm(per-tile correlation of query and key, via FFT)."""

    def __init__(self, c: int, patch: int):
        super().__init__()
        self.patch = patch
        # query, key and value have 2c channels each (the paper's widened hidden features)
        self.to_qkv = nn.Conv2d(c, 6 * c, 1, bias=False)
        self.dwconv = nn.Conv2d(6 * c, 6 * c, 3, padding=1, groups=6 * c, bias=False)
        self.norm = LayerNorm2d(2 * c)
        self.project_out = nn.Conv2d(2 * c, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.dwconv(self.to_qkv(x)).chunk(3, dim=1)
        with torch.autocast(q.device.type, enabled=False):
            # F(q) * conj(F(k)): the correlation of q and k over each tile, all shifts at once
            corr = patch_irfft(patch_rfft(q, self.patch) * patch_rfft(k, self.patch).conj(), q.dtype)
        return self.project_out(v * self.norm(corr))


class Block(nn.Module):
    """Pre-norm transformer block: x + FSAS(LN(x)) (decoder only), then x + DFFN(LN(x)).
    ``modulate`` (BlurDM's prior, the authors' placement): x + FSAS(modulate(LN(x)))."""

    def __init__(self, c: int, expand: float, patch: int, attention: bool):
        super().__init__()
        self.norm1 = LayerNorm2d(c) if attention else None
        self.attn = FSAS(c, patch) if attention else None
        self.norm2 = LayerNorm2d(c)
        self.ffn = DFFN(c, expand, patch)

    def forward(self, x: torch.Tensor, modulate=None) -> torch.Tensor:
        if self.attn is not None:
            a = self.norm1(x)
            x = x + self.attn(a if modulate is None else modulate(a))
        return x + self.ffn(self.norm2(x))


class Fuse(nn.Module):
    """Merge of the upsampled decoder features and the encoder skip: 1x1 conv -> DFFN block -> 1x1 conv, halves summed."""

    def __init__(self, c: int, patch: int):
        super().__init__()
        self.conv_in = nn.Conv2d(2 * c, 2 * c, 1)
        self.block = Block(2 * c, 2.66, patch, attention=False)
        self.conv_out = nn.Conv2d(2 * c, 2 * c, 1)

    def forward(self, dec: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        a, b = self.conv_out(self.block(self.conv_in(torch.cat([dec, enc], dim=1)))).chunk(2, dim=1)
        return a + b


def resample(cin: int, cout: int, scale: float) -> nn.Module:
    """Bilinear resize by ``scale`` then a 3x3 convolution (the paper's down- and upsampling)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False), nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    )


class FFTformer(nn.Module):
    """FFTformer image restorer.

    width: channels at full resolution (doubled at each further level).
    enc_blocks: blocks per level, finest first; the decoder has as many at each level.
    refinement_blocks: FSAS blocks at full resolution after the decoder.
    ffn_expand: DFFN hidden width as a multiple of the channels; patch: FFT tile size.
    prior_dim: size of the optional prior vector that modulates the decoder and refinement blocks (0: none);
    prior_at / prior_init: where it enters and how it starts (:data:`unblur.nn.layers.PRIOR_AT`, ``PRIOR_INIT``).
    """

    multiscale = False  # one output scale (see unblur.nn)

    @register_to_config
    def __init__(
        self,
        width: int = 48,
        enc_blocks=(6, 6, 12),
        refinement_blocks: int = 4,
        ffn_expand: float = 3.0,
        patch: int = 8,
        in_channels: int = 3,
        prior_dim: int = 0,
        prior_at: str = "output",
        prior_init: str = "identity",
    ):
        super().__init__()
        check_prior_options(prior_at, prior_init)
        levels = len(enc_blocks)
        chans = [width * 2**i for i in range(levels)]

        def stack(c: int, n: int, attention: bool) -> nn.Sequential:
            return nn.Sequential(*[Block(c, ffn_expand, patch, attention) for _ in range(n)])

        self.embed = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(stack(c, n, False) for c, n in zip(chans, enc_blocks))
        self.downs = nn.ModuleList(resample(c, 2 * c, 0.5) for c in chans[:-1])
        # decoders[i] works at level i; the coarsest one runs straight after the coarsest encoder
        self.decoders = nn.ModuleList(stack(c, n, True) for c, n in zip(chans, enc_blocks))
        self.ups = nn.ModuleList(resample(2 * c, c, 2.0) for c in chans[:-1])
        self.fuses = nn.ModuleList(Fuse(c, patch) for c in chans[:-1])
        self.refinement = stack(width, refinement_blocks, True)
        self.output = nn.Conv2d(width, in_channels, 3, padding=1, bias=False)
        # one modulation per decoder block (group i: level i) and per refinement block (the last group)
        self.priors = prior_modulations(
            prior_dim, [*zip(chans, enc_blocks), (width, refinement_blocks)], prior_init, bias=prior_at == "output"
        )
        self.prior_at = "inside" if prior_at == "input" else prior_at
        self.multiple = 2 ** (levels - 1) * patch

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 3, H, W) in [0, 1]; prior: (B, prior_dim) or None. Returns (B, 3, H, W)."""
        inp, (h, w) = pad_to_multiple(x, self.multiple)
        y = self.embed(inp)
        skips = []
        for i, enc in enumerate(self.encoders):
            y = enc(y)
            if i < len(self.downs):
                skips.append(y)
                y = self.downs[i](y)
        last = len(self.decoders) - 1
        y = run_modulated(self.decoders[last], y, prior, self.priors, last, at=self.prior_at)
        for i in reversed(range(last)):
            y = self.fuses[i](self.ups[i](y), skips[i])
            y = run_modulated(self.decoders[i], y, prior, self.priors, i, at=self.prior_at)
        y = run_modulated(self.refinement, y, prior, self.priors, last + 1, at=self.prior_at)
        y = self.output(y) + inp
        return crop_to(y, (h, w))


# Sizes: the paper's GoPro model and a tiny one for tests.
PUBLISHED = {"width": 48, "enc_blocks": [6, 6, 12], "refinement_blocks": 4, "ffn_expand": 3.0, "patch": 8}
TINY = {"width": 8, "enc_blocks": [1, 1], "refinement_blocks": 1, "ffn_expand": 2.0, "patch": 4}
# The paper's "FLOPs" are multiply-accumulates at 256x256 without the FFTs, as FlopCounterMode counts them.
PAPER = {
    "params_m": 16.6,
    "gmacs": 131.0,
    "source": "Kong et al. 2023, Table 1 (GoPro; 16.6 M parameters, ~131 G FLOPs = MACs at 256x256)",
}

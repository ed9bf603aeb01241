"""LoFormer (Mao et al., "LoFormer: Local Frequency Transformer for Image Deblurring", ACM MM 2024), written from the paper.

A U-Net of Local Frequency Transformer (LoFT) blocks. Each block has two residual halves:

* LoFN, the local frequency network, works on the 2-D DCT-II of the whole feature map
  (an orthonormal transform, so nothing is lost and channel inner products are the same
  as in the spatial domain). The DCT coefficients are layer-normalised (DCT-LN), mapped
  to query/key/value by 1x1 and depthwise 3x3 convolutions, and cut into non-overlapping
  ``window x window`` windows. Because the DCT orders coefficients by frequency, each
  window holds one band of frequencies of the whole image, from the coarse structure in
  the top-left window to the finest texture in the bottom-right one. Freq-LC is a
  channel-wise self-attention (C x C attention matrix, as in Restormer) computed
  separately in every window, so low and high frequencies get their own attention
  instead of being averaged into one global one. MGate, an MLP over the window's
  ``window**2`` frequency positions (Linear + GELU applied to the value), gates the
  attention output and adds mixing across frequencies. The residual is added in the
  DCT domain and the sum transformed back by the inverse DCT;
* a gated depthwise-conv feed-forward network (GELU gate, Restormer's GDFN) in the
  spatial domain.

Three encoder levels (width, 2x, 4x), a bottleneck at 8x, a decoder that upsamples by
conv + pixel shuffle, concatenates the skip and reduces it by a 1x1 convolution (except
at full resolution, where the decoder keeps 2 x width channels). The network predicts
the residual to the input. Input and output are RGB in [0, 1], shape (B, 3, H, W); the
input is padded by reflection to a multiple of ``2**levels * window`` (every level must
tile into windows) and the output cropped back.

With ``prior_dim > 0`` a prior vector modulates every decoder block (BlurDM's fusion, see
:class:`unblur.nn.layers.PriorModulation`). ``prior_at="input"``: as the BlurDM authors do
(github.com/Jin-Ting-He/BlurDM, src/LoFormer/models/LoFormerBlurDM.py: ``Attention`` lines
151-152 and 281-290, called from ``TransformerBlock.forward`` lines 451-452 as
attn([norm1(DCT(x)), prior])), x * k + v on the layer-normalised DCT coefficients that enter
Freq-LC, inside the attention branch; only the decoder's blocks have a prior (``prior_exist=True``
at line 822, False for the encoder and bottleneck at lines 784 and 801); the Linear has a bias
(``bias=True``, line 711). ``prior_at="output"``: our first version (the block's output), kept
for the model files trained with it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from unblur.nn.configurable import register_to_config
from unblur.nn.layers import LayerNorm2d, check_prior_options, crop_to, pad_to_multiple, prior_modulations, run_modulated


@lru_cache(maxsize=64)
def dct_matrix(n: int, device: torch.device) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n, n), float32: D @ x is the DCT of x along its first axis, D.T @ y the inverse."""
    # a normal tensor even when first asked for under inference_mode, so the cached one can be used in training
    with torch.inference_mode(False):
        k = torch.arange(n, dtype=torch.float64)[:, None]
        i = torch.arange(n, dtype=torch.float64)[None, :]
        d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
        d[0] /= math.sqrt(2)
        return d.to(device=device, dtype=torch.float32)


def dct2(x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """2-D orthonormal DCT-II (or its inverse) over the last two axes of (..., H, W), by matmul.

    Computed in float32 with autocast off: half precision would lose the small high-frequency coefficients.
    """
    h, w = x.shape[-2:]
    dh, dw = dct_matrix(h, x.device), dct_matrix(w, x.device)
    if inverse:
        dh, dw = dh.T, dw.T
    with torch.autocast(x.device.type, enabled=False):
        return (dh @ x.float() @ dw.T).to(x.dtype)


class FreqLC(nn.Module):
    """Local channel-wise self-attention on DCT coefficients, per window, gated by MGate. (B, C, H, W) -> same."""

    def __init__(self, c: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.qkv_dw = nn.Conv2d(3 * c, 3 * c, 3, padding=1, groups=3 * c)
        # scaled dot-product, with the scale learned per head
        self.temperature = nn.Parameter(torch.full((heads, 1, 1), 1 / math.sqrt(c)))
        self.mgate = nn.Sequential(nn.Linear(window**2, window**2), nn.GELU())
        self.project_out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p, n = self.window, self.heads
        qkv = self.qkv_dw(self.qkv(x))
        # -> (3, B, H/p, W/p, heads, C/heads, p*p): one token per channel, its feature the window's p*p coefficients
        qkv = (
            qkv.reshape(b, 3, n, c // n, h // p, p, w // p, p)
            .permute(1, 0, 4, 6, 2, 3, 5, 7)
            .reshape(3, b, h // p, w // p, n, c // n, p * p)
        )
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        out = (attn @ v) * self.mgate(v)
        out = out.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
        return self.project_out(out)


class FeedForward(nn.Module):
    """Gated depthwise-conv FFN: 1x1 -> depthwise 3x3 -> GELU(a) * b -> 1x1."""

    def __init__(self, c: int, expand: float):
        super().__init__()
        hidden = int(c * expand)
        self.project_in = nn.Conv2d(c, 2 * hidden, 1)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.project_out = nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class LoFT(nn.Module):
    """Local frequency transformer block: x <- IDCT(DCT(x) + FreqLC(LN(DCT(x)))), then x <- x + FFN(LN(x)).
    ``modulate`` (BlurDM's prior, the authors' placement): FreqLC(modulate(LN(DCT(x))))."""

    def __init__(self, c: int, heads: int, window: int, expand: float):
        super().__init__()
        self.norm1 = LayerNorm2d(c)
        self.attn = FreqLC(c, heads, window)
        self.norm2 = LayerNorm2d(c)
        self.ffn = FeedForward(c, expand)

    def forward(self, x: torch.Tensor, modulate=None) -> torch.Tensor:
        f = dct2(x)
        a = self.norm1(f)
        x = dct2(f + self.attn(a if modulate is None else modulate(a)), inverse=True)
        return x + self.ffn(self.norm2(x))


class LoFormer(nn.Module):
    """LoFormer image restorer.

    width: channels at full resolution (doubled at each level down).
    enc_blocks / dec_blocks: LoFT blocks per level (encoder finest first, decoder coarsest first);
    middle_blocks: at the lowest resolution. heads: attention heads per encoder level (the decoder
    uses them in reverse), middle_heads: in the bottleneck. window: frequency window size;
    ffn_expand: FFN hidden width as a multiple of the channels.
    prior_dim: size of the optional prior vector that modulates the decoder blocks (0: none);
    prior_at / prior_init: where it enters and how it starts (:data:`unblur.nn.layers.PRIOR_AT`, ``PRIOR_INIT``).
    """

    multiscale = False  # one output scale (see unblur.nn)

    @register_to_config
    def __init__(
        self,
        width: int = 48,
        enc_blocks=(2, 4, 12),
        middle_blocks: int = 18,
        dec_blocks=(12, 4, 4),
        heads=(1, 2, 4),
        middle_heads: int = 8,
        window: int = 8,
        ffn_expand: float = 2.66,
        in_channels: int = 3,
        prior_dim: int = 0,
        prior_at: str = "output",
        prior_init: str = "identity",
    ):
        super().__init__()
        check_prior_options(prior_at, prior_init)
        if not len(enc_blocks) == len(dec_blocks) == len(heads):
            raise ValueError("enc_blocks, dec_blocks and heads need one entry per level")
        levels = len(enc_blocks)

        def stack(c: int, n: int, nh: int) -> nn.Sequential:
            return nn.Sequential(*[LoFT(c, nh, window, ffn_expand) for _ in range(n)])

        self.embed = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.encoders, self.downs, self.ups, self.reduces, self.decoders = (nn.ModuleList() for _ in range(5))
        c = width
        for n, nh in zip(enc_blocks, heads):
            self.encoders.append(stack(c, n, nh))
            # halve the channels, then fold 2x2 pixels into channels: 2c channels at half the size
            self.downs.append(nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2)))
            c *= 2
        self.middle = stack(c, middle_blocks, middle_heads)
        dec_chans = []
        for i, (n, nh) in enumerate(zip(dec_blocks, reversed(heads))):
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1, bias=False), nn.PixelShuffle(2)))
            # after concatenating the skip there are c channels again; full resolution keeps them all
            last = i == levels - 1
            self.reduces.append(nn.Identity() if last else nn.Conv2d(c, c // 2, 1))
            c = c if last else c // 2
            dec_chans.append(c)
            self.decoders.append(stack(c, n, nh))
        self.output = nn.Conv2d(c, in_channels, 3, padding=1)
        # one per decoder block; the authors' Linear has a bias here (unlike their other backbones')
        self.priors = prior_modulations(prior_dim, list(zip(dec_chans, dec_blocks)), prior_init, bias=True)
        self.prior_at = "inside" if prior_at == "input" else prior_at
        self.multiple = 2**levels * window

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 3, H, W) in [0, 1]; prior: (B, prior_dim) or None. Returns (B, 3, H, W)."""
        inp, (h, w) = pad_to_multiple(x, self.multiple)
        y = self.embed(inp)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            y = enc(y)
            skips.append(y)
            y = down(y)
        y = self.middle(y)
        for i, (up, reduce, dec, skip) in enumerate(zip(self.ups, self.reduces, self.decoders, reversed(skips))):
            y = run_modulated(dec, reduce(torch.cat([up(y), skip], dim=1)), prior, self.priors, i, at=self.prior_at)
        y = self.output(y) + inp
        return crop_to(y, (h, w))


# Sizes: the paper's largest GoPro model (LoFormer-L) and a tiny one for tests. The authors group LoFT
# blocks in pairs (LoFormer-L: [1, 2, 6] / 9 / [6, 2, 2] pairs); the counts here are single blocks.
PUBLISHED = {
    "width": 48,
    "enc_blocks": [2, 4, 12],
    "middle_blocks": 18,
    "dec_blocks": [12, 4, 4],
    "heads": [1, 2, 4],
    "middle_heads": 8,
}
TINY = {
    "width": 8,
    "enc_blocks": [1, 1],
    "middle_blocks": 1,
    "dec_blocks": [1, 1],
    "heads": [1, 2],
    "middle_heads": 2,
    "window": 4,
}
# The paper's 126 G "FLOPs" are multiply-accumulates from the authors' own counter, which leaves out the DCTs
# and counts only half of each FFN input projection; FlopCounterMode counts both (the DCTs as dense matmuls, 44 G).
PAPER = {
    "params_m": 49.03,
    "gmacs": 126.0,
    "source": "Mao et al. 2024: 126 G FLOPs (MACs, 256x256) from the abstract; 49.03 M = LoFormer-L as the authors released it "
    "(train_GoPro_LoformerLarge config), not checked against the paper's table",
}

"""Stripformer (Tsai et al., "Stripformer: Strip Transformer for Fast Image Deblurring", ECCV 2022), written from the paper.

Blur in dynamic scenes is mostly oriented (horizontal / vertical streaks of varying
length), so instead of square windows the attention works on strips:

* a convolutional feature embedding (residual conv blocks at full and 1/2 resolution,
  strided convolutions) brings the image to 1/4 resolution;
* a bottleneck of alternating *intra-strip* and *inter-strip* attention blocks. Each
  block splits the channels in two halves, one attending along horizontal strips and
  one along vertical strips. Intra-strip: the tokens are the pixels of one row
  (column), so every pixel sees its whole row (column). Inter-strip: each row
  (column) is one token whose feature is the whole strip, so strips attend to each
  other and the block captures blur of larger extent. Both are multi-head, with a
  pre-norm MLP and a depthwise-convolution positional encoding after them;
* a decoder that upsamples by transposed convolutions, fuses the encoder's skips,
  runs further intra/inter blocks at 1/2 resolution and residual convs at full.

The network predicts the residual to the input. Input and output are RGB in [0, 1],
shape (B, 3, H, W); the input is padded by reflection to a multiple of 4 and the
output cropped back. With ``prior_dim > 0`` a prior vector modulates every bottleneck and
decoder attention block (BlurDM's fusion, see :class:`unblur.nn.layers.PriorModulation`).
``prior_at="input"``: as the BlurDM authors do (github.com/Jin-Ting-He/BlurDM,
src/Stripformer/models/StripformerBlurDM.py, ``Intra_SA`` lines 220-263 and ``Inter_SA``
lines 290-342), x * k + v on the input of the attention branch only: the residual is taken
before the modulation, the MLP branch sees none; Linear without bias.
``prior_at="output"``: our first version (the block's output, Linear with bias), kept for the
model files trained with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unblur.nn.configurable import register_to_config
from unblur.nn.layers import LayerNorm2d, check_prior_options, crop_to, pad_to_multiple, prior_modulations, run_modulated


def act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock(nn.Module):
    """act(x + conv3x3(act(conv3x3(x)))): the convolutional blocks of the embedding and the last decoder level."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), act(), nn.Conv2d(c, c, 3, padding=1))
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def strip_attention(qkv: torch.Tensor, heads: int, intra: bool) -> torch.Tensor:
    """Multi-head attention along horizontal strips (rows) of a (B, 3c, H, W) query/key/value map.

    intra: the W pixels of each row attend to each other, token feature = c / heads channels.
    inter: the H rows attend to each other, token feature = (c / heads channels) x W pixels.
    Returns (B, c, H, W). Vertical strips: call it on the transposed map and transpose back.
    """
    b, c3, h, w = qkv.shape
    c = c3 // 3
    qkv = qkv.reshape(b, 3, heads, c // heads, h, w)
    if intra:  # sequences: (B*H rows) x heads, tokens: W pixels
        q, k, v = qkv.permute(1, 0, 4, 2, 5, 3).reshape(3, b * h, heads, w, c // heads)
        y = F.scaled_dot_product_attention(q, k, v)  # (B*H, heads, W, c/heads)
        return y.reshape(b, h, heads, w, c // heads).permute(0, 2, 4, 1, 3).reshape(b, c, h, w)
    # sequences: B x heads, tokens: H rows, each flattened over its channels and W pixels
    q, k, v = qkv.permute(1, 0, 2, 4, 3, 5).reshape(3, b, heads, h, c // heads * w)
    y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, H, c/heads * W)
    return y.reshape(b, heads, h, c // heads, w).permute(0, 1, 3, 2, 4).reshape(b, c, h, w)


class StripBlock(nn.Module):
    """Intra- or inter-strip transformer block on (B, dim, H, W); half the channels use horizontal strips,
    the other half vertical ones. x + attention(norm(x)), then x + MLP(norm(x)), then x + dwconv3x3(x).
    ``modulate`` (BlurDM's prior, the authors' placement) applies to the attention branch's input only:
    x + attention(norm(modulate(x)))."""

    def __init__(self, dim: int, heads: int, intra: bool, mlp_ratio: int = 4):
        super().__init__()
        if dim % 2 or (dim // 2) % heads:
            raise ValueError(f"dim/2 = {dim / 2} must be a multiple of heads = {heads}")
        self.heads, self.intra = heads, intra
        half = dim // 2
        self.norm1 = LayerNorm2d(dim)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.qkv_h = nn.Conv2d(half, 3 * half, 1)
        self.qkv_v = nn.Conv2d(half, 3 * half, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, mlp_ratio * dim, 1), nn.GELU(), nn.Conv2d(mlp_ratio * dim, dim, 1))
        # conditional positional encoding: attention alone is blind to where a pixel is along its strip
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, modulate=None) -> torch.Tensor:
        a = x if modulate is None else modulate(x)
        xh, xv = self.proj_in(self.norm1(a)).chunk(2, dim=1)
        yh = strip_attention(self.qkv_h(xh), self.heads, self.intra)
        yv = strip_attention(self.qkv_v(xv).transpose(-1, -2), self.heads, self.intra).transpose(-1, -2)
        x = x + self.proj_out(torch.cat([yh, yv], dim=1))
        x = x + self.mlp(self.norm2(x))
        return x + self.pos(x)


def strip_blocks(dim: int, heads: int, pairs: int) -> nn.ModuleList:
    """``pairs`` x (intra-strip block, inter-strip block)."""
    return nn.ModuleList(StripBlock(dim, heads, intra=i % 2 == 0) for i in range(2 * pairs))


class Stripformer(nn.Module):
    """Stripformer image restorer.

    widths: embedding channels at full, 1/2 and 1/4 resolution (the last is the bottleneck's).
    res_blocks: residual conv blocks per embedding level (full and 1/2 resolution).
    pairs / heads: intra+inter block pairs and attention heads in the bottleneck (1/4).
    dec_width / dec_pairs / dec_heads: the same for the decoder's attention at 1/2 resolution.
    prior_dim: size of the optional prior vector that modulates the attention blocks (0: none);
    prior_at / prior_init: where it enters and how it starts (:data:`unblur.nn.layers.PRIOR_AT`, ``PRIOR_INIT``).
    """

    multiscale = False  # one output scale (see unblur.nn)

    @register_to_config
    def __init__(
        self,
        widths=(64, 128, 320),
        res_blocks: int = 3,
        pairs: int = 6,
        heads: int = 5,
        dec_width: int = 192,
        dec_pairs: int = 3,
        dec_heads: int = 3,
        mlp_ratio: int = 4,
        prior_dim: int = 0,
        prior_at: str = "output",
        prior_init: str = "identity",
    ):
        super().__init__()
        check_prior_options(prior_at, prior_init)
        c1, c2, c4 = widths
        # feature embedding: full -> 1/2 -> 1/4 resolution
        self.embed1 = nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), act(), *[ResBlock(c1) for _ in range(res_blocks)])
        self.embed2 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), act(), *[ResBlock(c2) for _ in range(res_blocks)])
        self.embed4 = nn.Sequential(nn.Conv2d(c2, c4, 3, stride=2, padding=1), act())
        self.bottleneck = strip_blocks(c4, heads, pairs)
        # decoder: 1/4 -> 1/2 (fuse skip, strip blocks) -> full (fuse skip, residual convs)
        self.up2 = nn.Sequential(nn.ConvTranspose2d(c4, dec_width, 4, stride=2, padding=1), act())
        self.fuse2 = nn.Sequential(nn.Conv2d(dec_width + c2, dec_width, 1), act())
        self.decoder = strip_blocks(dec_width, dec_heads, dec_pairs)
        self.up1 = nn.Sequential(nn.ConvTranspose2d(dec_width, c1, 4, stride=2, padding=1), act())
        self.fuse1 = nn.Sequential(nn.Conv2d(2 * c1, c1, 1), act(), nn.Conv2d(c1, c1, 3, padding=1))
        self.act = act()
        self.refine = ResBlock(c1)
        self.out = nn.Conv2d(c1, 3, 3, padding=1)
        # one modulation per attention block: group 0 the bottleneck, group 1 the decoder
        self.priors = prior_modulations(
            prior_dim, [(c4, len(self.bottleneck)), (dec_width, len(self.decoder))], prior_init, bias=prior_at == "output"
        )
        self.prior_at = "inside" if prior_at == "input" else prior_at

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 3, H, W) in [0, 1]; prior: (B, prior_dim) or None. Returns (B, 3, H, W)."""
        inp, (h, w) = pad_to_multiple(x, 4)
        skip1 = self.embed1(inp)
        skip2 = self.embed2(skip1)
        y = self.embed4(skip2)
        y = run_modulated(self.bottleneck, y, prior, self.priors, 0, at=self.prior_at)
        y = self.fuse2(torch.cat([self.up2(y), skip2], dim=1))
        y = run_modulated(self.decoder, y, prior, self.priors, 1, at=self.prior_at)
        y = self.up1(y)
        y = self.refine(self.act(y + self.fuse1(torch.cat([y, skip1], dim=1))))
        return crop_to(self.out(y) + inp, (h, w))


# Sizes: the paper's GoPro model and a tiny one for tests.
PUBLISHED = {"widths": [64, 128, 320], "res_blocks": 3, "pairs": 6, "heads": 5, "dec_width": 192, "dec_pairs": 3, "dec_heads": 3}
TINY = {"widths": [8, 8, 16], "res_blocks": 1, "pairs": 1, "heads": 2, "dec_width": 16, "dec_pairs": 1, "dec_heads": 2}
PAPER = {
    "params_m": 19.7,
    "gmacs": None,  # no MACs figure for it that we could check
    "source": "Tsai et al. 2022, GoPro comparison table (19.7 M parameters)",
}

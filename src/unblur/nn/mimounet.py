"""MIMO-UNet+ (Cho et al., "Rethinking Coarse-to-Fine Approach in Single Image Deblurring", ICCV 2021), written from the paper.

Coarse-to-fine deblurring in a single U-Net instead of a cascade of sub-networks:

* multi-input: the blurred image at 1/2 and 1/4 scale is turned into features by a
  shallow convolutional module (SCM) and merged into the encoder's downsampled
  features by a feature attention module (FAM, ``x + conv(x * scm)``);
* asymmetric feature fusion (AFF): each decoder level's skip connection is made
  from the encoder features of *all* levels, resized and fused by two convolutions;
* multi-output: each of the 3 decoder levels predicts a residual image that is added
  to the input at that scale, so the coarse levels get their own supervision.

Encoder and decoder blocks are stacks of plain residual blocks (conv-ReLU-conv);
MIMO-UNet+ uses 20 per block at widths 32/64/128 (16.1 M parameters). Input and
output are RGB in [0, 1], shape (B, 3, H, W); the input is padded by reflection to a
multiple of 4 and the output cropped back.

With ``prior_dim > 0`` a prior vector modulates each decoder block (one per level; BlurDM's
fusion, see :class:`unblur.nn.layers.PriorModulation`). ``prior_at="input"``: as the BlurDM
authors do (github.com/Jin-Ting-He/BlurDM, src/MIMO_UNet/models/MIMOUNetBlurDM.py, ``DBlock``,
lines 36-47), x * k + v on the block's *input*, before its residual blocks, Linear without bias.
``prior_at="output"``: our first version (the block's output, Linear with bias), kept for the
model files trained with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unblur.nn.configurable import register_to_config
from unblur.nn.layers import check_prior_options, crop_to, pad_to_multiple, prior_modulations, run_modulated


def conv(cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> nn.Module:
    """k x k convolution keeping the size (or halving it with stride 2), optionally followed by ReLU."""
    layer = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)
    return nn.Sequential(layer, nn.ReLU(inplace=True)) if relu else layer


def up(cin: int, cout: int) -> nn.Module:
    """Transposed 4x4 convolution that exactly doubles the size, then ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.ReLU(inplace=True))


def half(x: torch.Tensor) -> torch.Tensor:
    """Halve an even-sized (B, C, H, W) by 2x2 averaging (what ``F.interpolate(mode="area")`` gives)."""
    return F.avg_pool2d(x, 2)


class ResBlock(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))): the building block of every encoder and decoder block."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv(c, c, 3), conv(c, c, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SCM(nn.Module):
    """Shallow convolutional module: features of a downscaled blurred image (B, 3, h, w) -> (B, c, h, w).

    A light stack of 3x3 and 1x1 convolutions makes c - 3 channels, the image itself is
    concatenated (so the features keep its exact colours) and a 1x1 convolution mixes them.
    """

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv(3, c // 4, 3), conv(c // 4, c // 2, 1), conv(c // 2, c // 2, 3), conv(c // 2, c - 3, 1))
        self.mix = conv(c, c, 1, relu=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([img, self.body(img)], dim=1))


class FAM(nn.Module):
    """Feature attention module: the SCM features act as an attention map on the encoder features."""

    def __init__(self, c: int):
        super().__init__()
        self.merge = conv(c, c, 3, relu=False)

    def forward(self, enc: torch.Tensor, scm: torch.Tensor) -> torch.Tensor:
        return enc + self.merge(enc * scm)


class AFF(nn.Module):
    """Asymmetric feature fusion: encoder features of all levels (resized to one level) -> that level's skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(conv(cin, cout, 1), conv(cout, cout, 3, relu=False))

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat(feats, dim=1))


class MIMOUNetPlus(nn.Module):
    """MIMO-UNet(+) image restorer.

    width: channels at full resolution (x2, x4 at 1/2 and 1/4 scale); 32 in the paper.
    num_res: residual blocks per encoder / decoder block (8: MIMO-UNet, 20: MIMO-UNet+).
    dropout: channel dropout on the two fused skips (the authors' MIMO-UNet+ uses 0.1).
    prior_dim: size of the optional prior vector that modulates the decoder blocks (0: none);
    prior_at / prior_init: where it enters and how it starts (:data:`unblur.nn.layers.PRIOR_AT`, ``PRIOR_INIT``).
    """

    multiscale = True  # forward(x, prior, all_scales=True) returns every scale, for the multi-scale loss

    @register_to_config
    def __init__(self, width: int = 32, num_res: int = 20, dropout: float = 0.1, prior_dim: int = 0,
                 prior_at: str = "output", prior_init: str = "identity"):  # fmt: skip
        super().__init__()
        check_prior_options(prior_at, prior_init)
        widths = (width, 2 * width, 4 * width)

        def stack(c: int) -> nn.Sequential:
            return nn.Sequential(*[ResBlock(c) for _ in range(num_res)])

        self.intro = conv(3, width, 3)
        self.encoders = nn.ModuleList(stack(c) for c in widths)
        self.downs = nn.ModuleList(conv(c, 2 * c, 3, stride=2) for c in widths[:2])
        self.scms = nn.ModuleList(SCM(c) for c in widths[1:])  # 1/2 and 1/4 scale inputs
        self.fams = nn.ModuleList(FAM(c) for c in widths[1:])
        # skips of the full and 1/2 levels, each fused from all three encoder levels
        self.affs = nn.ModuleList(AFF(sum(widths), c) for c in widths[:2])
        self.drop = nn.Dropout2d(dropout)
        # decoder, coarsest level first
        self.decoders = nn.ModuleList(stack(c) for c in reversed(widths))
        self.ups = nn.ModuleList(up(c, c // 2) for c in reversed(widths[1:]))
        self.merges = nn.ModuleList(conv(c, c // 2, 1) for c in reversed(widths[1:]))  # [up, skip] -> c/2
        self.outs = nn.ModuleList(conv(c, 3, 3, relu=False) for c in reversed(widths))
        # one per decoder level
        self.priors = prior_modulations(prior_dim, [(c, 1) for c in reversed(widths)], prior_init, bias=prior_at == "output")
        self.prior_at = prior_at

    def forward(
        self, x: torch.Tensor, prior: torch.Tensor | None = None, all_scales: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """x: (B, 3, H, W) in [0, 1]; prior: (B, prior_dim) or None. Returns the full-resolution (B, 3, H, W),
        or with ``all_scales`` the three outputs, finest first, for the multi-scale loss.

        With Hp, Wp = H, W rounded up to multiples of 4 (the reflection-padded input), the list is
        [(B, 3, H, W), (B, 3, Hp/2, Wp/2), (B, 3, Hp/4, Wp/4)]: the coarse outputs are *not* cropped
        and restore the padded input's 2x2- and 4x4-averaged downscales. For H, W multiples of 4
        (training crops) their targets are ``losses.downscale_like(sharp, out)``.
        """
        inp, (h, w) = pad_to_multiple(x, 4)
        imgs = [inp, half(inp)]
        imgs.append(half(imgs[1]))

        # encoder: at 1/2 and 1/4 scale the downsampled features are merged with that scale's image
        feats = [self.encoders[0](self.intro(inp))]
        for i in range(2):
            y = self.fams[i](self.downs[i](feats[-1]), self.scms[i](imgs[i + 1]))
            feats.append(self.encoders[i + 1](y))

        def resized(level: int) -> list[torch.Tensor]:
            size = feats[level].shape[-2:]
            return [f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear") for f in feats]

        skips = [self.drop(aff(*resized(level))) for level, aff in enumerate(self.affs)]

        # decoder from the coarsest level: each level outputs a residual for its own scale
        y, outs = feats[2], []
        for i, dec in enumerate(self.decoders):
            if i:
                y = self.merges[i - 1](torch.cat([self.ups[i - 1](y), skips[2 - i]], dim=1))
            y = run_modulated([dec], y, prior, self.priors, i, at=self.prior_at)
            outs.append(self.outs[i](y) + imgs[2 - i])
        outs.reverse()
        outs[0] = crop_to(outs[0], (h, w))
        return outs if all_scales else outs[0]


# Sizes: the paper's MIMO-UNet+ and a tiny one for tests.
PUBLISHED = {"width": 32, "num_res": 20, "dropout": 0.1}
TINY = {"width": 8, "num_res": 1, "dropout": 0.0}
PAPER = {
    "params_m": 16.1,
    "gmacs": 154.41,
    "source": "params: Cho et al. 2021, Table 1 (MIMO-UNet+); MACs (thop 'FLOPs', 256x256): Kong et al. 2023 (FFTformer), Table 1, as we remember it (not re-checked)",
}

"""NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022), written from the paper.

A U-Net of "nonlinear activation free" blocks: LayerNorm, 1x1 and depthwise 3x3
convolutions, a SimpleGate (split channels in two halves and multiply them) in
place of activations, and simplified channel attention. Input and output are
RGB in [0, 1], shape (B, 3, H, W); the network predicts the residual to the
input. H and W need not be multiples of anything: the input is padded by
reflection to a multiple of 2**levels and the output cropped back.

With ``prior_dim > 0`` a prior vector modulates the decoder (BlurDM's fusion, see
:class:`unblur.nn.layers.PriorModulation`). NAFNet is not one of the BlurDM authors' backbones;
``prior_at="input"`` is our analogue of their MIMO-UNet+ placement (``DBlock.forward``: x * k + v
on the input of each decoder level's stack of residual blocks, Linear without bias): here the input
of each decoder level's NAFBlocks (upsampled features + skip). ``prior_at="output"`` is our first
version, every decoder block's output (Linear with bias), kept for the model files trained with it.
"""

from __future__ import annotations

import torch
from torch import nn

from unblur.nn.configurable import register_to_config
from unblur.nn.layers import LayerNorm2d, check_prior_options, crop_to, pad_to_multiple, prior_modulations, run_modulated


class SimpleGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """Spatial mixing (1x1 -> depthwise 3x3 -> gate -> channel attention -> 1x1) then a gated FFN.

    Both branches are scaled by learned per-channel factors that start at zero,
    so a freshly built block is the identity and deep stacks train stably.
    """

    def __init__(self, c: int, expand: int = 2, ffn_expand: int = 2):
        super().__init__()
        dw = c * expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, c * ffn_expand, 1)
        self.conv5 = nn.Conv2d(c * ffn_expand // 2, c, 1)
        self.gate = SimpleGate()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(self.conv2(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        x = x + self.beta * y
        y = self.conv5(self.gate(self.conv4(self.norm2(x))))
        return x + self.gamma * y


class NAFNet(nn.Module):
    """NAFNet image restorer.

    width: channels at full resolution (doubled at each of the ``len(enc_blocks)`` levels).
    enc_blocks / dec_blocks: NAFBlocks per level; middle_blocks: at the lowest resolution.
    prior_dim: size of the optional prior vector that modulates the decoder (0: none);
    prior_at / prior_init: where it enters and how it starts (:data:`unblur.nn.layers.PRIOR_AT`, ``PRIOR_INIT``).
    """

    multiscale = False  # one output scale (see unblur.nn)

    @register_to_config
    def __init__(
        self,
        width: int = 16,
        enc_blocks=(1, 1, 1, 8),
        middle_blocks: int = 1,
        dec_blocks=(1, 1, 1, 1),
        in_channels: int = 3,
        prior_dim: int = 0,
        prior_at: str = "output",
        prior_init: str = "identity",
    ):
        super().__init__()
        check_prior_options(prior_at, prior_init)
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError("enc_blocks and dec_blocks need one entry per level")
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.ending = nn.Conv2d(width, in_channels, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*[NAFBlock(c) for _ in range(middle_blocks)])
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c) for _ in range(n)]))
        levels = len(dec_blocks)
        # "input": one modulation per decoder level, on its input; "output": one per decoder block, on its output
        per_level = [1 if prior_at == "input" else n for n in dec_blocks]
        self.priors = prior_modulations(
            prior_dim,
            [(width * 2 ** (levels - 1 - i), n) for i, n in enumerate(per_level)],
            prior_init,
            bias=prior_at == "output",
        )
        self.prior_at = prior_at
        self.multiple = 2 ** len(enc_blocks)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 3, H, W) in [0, 1]; prior: (B, prior_dim) or None. Returns (B, 3, H, W)."""
        inp, (h, w) = pad_to_multiple(x, self.multiple)
        y = self.intro(inp)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            y = enc(y)
            skips.append(y)
            y = down(y)
        y = self.middle(y)
        for i, (dec, up, skip) in enumerate(zip(self.decoders, self.ups, reversed(skips))):
            y = run_modulated(dec, up(y) + skip, prior, self.priors, i, at=self.prior_at)
        y = self.ending(y) + inp
        return crop_to(y, (h, w))


# Sizes: the paper's GoPro model (width 32, 36 blocks) and a tiny one for tests.
PUBLISHED = {"width": 32, "enc_blocks": [1, 1, 1, 28], "middle_blocks": 1, "dec_blocks": [1, 1, 1, 1]}
TINY = {"width": 8, "enc_blocks": [1, 1], "middle_blocks": 1, "dec_blocks": [1, 1]}
PAPER = {"params_m": 17.11, "gmacs": 16.25, "source": "Chen et al. 2022, Table (GoPro, NAFNet-32)"}

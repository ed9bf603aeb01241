"""BD-Diff (Cheng et al., 2025): blur-decoupled learning with two Q-Formers — the feature extractors.

BD-Diff conditions a latent diffusion model on two sets of tokens extracted from an image:
*structure* (what is in the scene) and *blur pattern* (how it is smeared). Each set comes from a
Q-Former: a few learned query tokens that attend to the image's feature tokens, so whatever the
image size the condition is a fixed number of tokens. A learned set of "sharp" blur tokens asks
the generator for a sharp result. The authors released no code; every choice the paper leaves
open is written down in ``docs/methods/bd-diff.md``.

Shapes: images or latents (B, C, H, W) -> feature tokens (B, N, width) -> query tokens
(B, queries, width). The generator's cross-attention takes ``condition(structure, blur)``,
(B, structure_queries + blur_queries, width).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes, (h * w, dim): tokens keep their place for any image size."""
    if dim % 4:
        raise ValueError(f"width must be a multiple of 4 for 2-D position codes, got {dim}")
    quarter = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, device=device) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    parts = [f(c.reshape(-1, 1).float() * freq) for c in (ys, xs) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1)


class FeatureEncoder(nn.Module):
    """(B, C, H, W) -> (B, H/p * W/p, width) feature tokens: a patch embedding, a few conv blocks, position codes.
    One encoder is shared by both Q-Formers (our choice: the two extractors differ only in what they ask)."""

    def __init__(self, in_channels: int = 4, width: int = 128, patch: int = 2, blocks: int = 2):
        super().__init__()
        self.patch = nn.Conv2d(in_channels, width, patch, stride=patch)
        self.blocks = nn.Sequential(
            *[nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1)) for _ in range(blocks)]
        )
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.patch(x)
        y = y + self.blocks(y)
        c, h, w = y.shape[1:]
        return y.flatten(2).transpose(1, 2) + sincos_2d(h, w, c, y.device).to(y.dtype)


class QFormerLayer(nn.Module):
    """Queries attend to themselves, then to the image tokens, then pass an MLP (pre-norm, residual)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, q: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        h = self.norm1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        q = q + self.cross_attn(self.norm2(q), feats, feats, need_weights=False)[0]
        return q + self.mlp(self.norm3(q))


class QFormer(nn.Module):
    """``queries`` learned tokens that read an image's feature tokens through ``layers`` attention layers."""

    def __init__(self, queries: int = 16, width: int = 128, layers: int = 2, heads: int = 4):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, queries, width) * 0.02)
        self.layers = nn.ModuleList(QFormerLayer(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, N, width) -> (B, queries, width)."""
        q = self.queries.expand(feats.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, feats)
        return self.norm(q)


class BlurDecoupler(nn.Module):
    """The two extractors and the "sharp" blur tokens.

    ``structure(x)``: (B, structure_queries, width); ``blur(x)``: (B, blur_queries, width);
    ``sharp_blur(B)``: the learned tokens that mean "no blur"; ``condition(s, b)``: their
    concatenation, the generator's cross-attention context.
    """

    def __init__(
        self,
        in_channels: int = 4,
        width: int = 128,
        patch: int = 2,
        structure_queries: int = 32,
        blur_queries: int = 8,
        layers: int = 2,
        heads: int = 4,
    ):
        super().__init__()
        self.config = {
            "in_channels": in_channels,
            "width": width,
            "patch": patch,
            "structure_queries": structure_queries,
            "blur_queries": blur_queries,
            "layers": layers,
            "heads": heads,
        }
        self.encoder = FeatureEncoder(in_channels, width, patch)
        self.structure_former = QFormer(structure_queries, width, layers, heads)
        self.blur_former = QFormer(blur_queries, width, layers, heads)
        self.sharp_tokens = nn.Parameter(torch.randn(1, blur_queries, width) * 0.02)

    def structure(self, x: torch.Tensor) -> torch.Tensor:
        return self.structure_former(self.encoder(x))

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur_former(self.encoder(x))

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Structure and blur tokens of the same image, encoding it once."""
        feats = self.encoder(x)
        return self.structure_former(feats), self.blur_former(feats)

    def sharp_blur(self, batch: int) -> torch.Tensor:
        return self.sharp_tokens.expand(batch, -1, -1)

    @staticmethod
    def condition(structure: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        return torch.cat([structure, blur], dim=1)

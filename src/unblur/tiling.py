"""Running a network on images of any size with bounded memory.

``run_tiled`` cuts the image into overlapping tiles, restores each, and blends
them back with weights that fall smoothly to zero towards the tile edges, so
seams do not show and memory depends on the tile size only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D blending weight of one tile.

    At an edge shared with a neighbour, the outermost quarter of the overlap gets
    weight 0 (those pixels saw the artificial tile border) and the rest of the
    overlap ramps linearly up to 1; at image edges the weight is 1.
    """
    w = torch.ones(n)
    skip = overlap // 4
    ramp = torch.cat([torch.zeros(skip), torch.linspace(0, 1, overlap - skip + 2)[1:-1]])
    if not at_start and overlap:
        w[:overlap] = ramp
    if not at_end and overlap:
        w[-overlap:] = ramp.flip(0)
    return w


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int = 32, scale: float = 1
) -> torch.Tensor:
    """Apply ``fn`` ((1, C, h, w) -> (1, C', h * scale, w * scale)) to x (1, C, H, W) tile by tile.

    ``tile`` is the tile side in pixels (> 2 * overlap); tiles overlap by at
    least ``overlap`` pixels and are blended (see :func:`_ramp`); an image smaller
    than one tile is processed whole. For an operator that sees at most
    ``overlap // 4`` pixels around each output pixel the result equals
    ``fn(x)`` exactly. ``scale`` is the output's size per input pixel (a VAE
    encoder: 1/8, its decoder: 8); tile and overlap are in input pixels, and
    ``tile * scale`` and ``overlap * scale`` must be whole numbers. Returns float32 on the CPU.
    """
    _, _, h, w = x.shape
    if tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must be larger than twice the overlap ({overlap})")
    if h <= tile and w <= tile:
        return fn(x)

    def out_px(n: int) -> int:
        return round(n * scale)

    stride = tile - overlap
    out = weight = None
    for y in _starts(h, tile, stride):
        for x0 in _starts(w, tile, stride):
            th, tw = min(tile, h), min(tile, w)
            piece = fn(x[..., y : y + th, x0 : x0 + tw]).float().cpu()
            if out is None:  # the output's channels are known once fn has run
                out = torch.zeros(1, piece.shape[1], out_px(h), out_px(w))
                weight = torch.zeros(1, 1, out_px(h), out_px(w))
            wy = _ramp(out_px(th), out_px(overlap), y == 0, y + th >= h)
            wx = _ramp(out_px(tw), out_px(overlap), x0 == 0, x0 + tw >= w)
            oy, ox = out_px(y), out_px(x0)
            out[..., oy : oy + out_px(th), ox : ox + out_px(tw)] += piece * (wy[:, None] * wx[None, :])
            weight[..., oy : oy + out_px(th), ox : ox + out_px(tw)] += wy[:, None] * wx[None, :]
    return out / weight

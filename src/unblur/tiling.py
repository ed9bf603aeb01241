"""Running a network on images of any size with bounded memory.

``run_tiled`` cuts the image into overlapping tiles, restores each, and blends
them back with weights that fall smoothly to zero towards the tile edges, so
seams do not show and memory depends on the tile size only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def plan_tiles(length: int, tile: int, overlap: int, multiple: int = 1) -> tuple[int, list[int]]:
    """(side, starts) of the fewest tiles of at most ``tile`` pixels that cover ``length`` with overlaps of at
    least ``overlap``, all of one side (a multiple of ``multiple`` where it fits) and evenly spread, so no
    tile redoes more pixels than it must (fixed strides leave a last tile that mostly repeats its neighbour)."""
    if length <= tile:
        return length, [0]
    n = -(-(length - overlap) // (tile - overlap))
    side = -(-(length + (n - 1) * overlap) // n)
    side = min(tile, length, -(-side // multiple) * multiple)
    n = max(n, -(-(length - overlap) // (side - overlap)))  # rounding up the side never needs more tiles, but check
    return side, [round(i * (length - side) / (n - 1)) for i in range(n)]


def count_tiles(shape: tuple[int, int], tile: int, overlap: int, multiple: int = 1) -> int:
    """How many tiles :func:`run_tiled` cuts an (H, W) image into (1 when it fits in one)."""
    h, w = shape
    if h <= tile and w <= tile:
        return 1
    return len(plan_tiles(h, tile, overlap, multiple)[1]) * len(plan_tiles(w, tile, overlap, multiple)[1])


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


def _pieces(fn, x: torch.Tensor, places: list, th: int, tw: int, workers: int):
    """``fn`` of each tile at ``places``, in order; with ``workers`` > 1 computed that many at a time in threads
    (a sliding window: at most ``workers`` finished tiles wait to be blended)."""
    tiles = (x[..., y : y + th, x0 : x0 + tw] for y, x0 in places)
    if workers <= 1:
        yield from map(fn, tiles)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        pending = deque()
        for t in tiles:
            pending.append(pool.submit(fn, t))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int = 32,
    scale: float = 1,
    multiple: int = 16,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> torch.Tensor:
    """Apply ``fn`` ((1, C, h, w) -> (1, C', h * scale, w * scale)) to x (1, C, H, W) tile by tile.

    ``tile`` is the largest tile side in pixels (> 2 * overlap); tiles overlap by at least
    ``overlap`` pixels, have sides that are multiples of ``multiple`` where the image allows
    (:func:`plan_tiles`), and are blended (see :func:`_ramp`); an image smaller than one tile is
    processed whole. For an operator that sees at most ``overlap // 4`` pixels around each output
    pixel the result equals ``fn(x)`` exactly. ``scale`` is the output's size per input pixel (a
    VAE encoder: 1/8, its decoder: 8); tile and overlap are in input pixels, and ``tile * scale``,
    ``overlap * scale`` and ``multiple * scale`` must be whole numbers. ``progress(done, total)`` is
    called after each tile. ``workers`` > 1 runs that many tiles at once in threads (PyTorch releases
    the interpreter lock inside its operators); the tiles are blended in order whatever finishes
    first, so the result does not depend on it. Returns float32 on the CPU.
    """
    _, _, h, w = x.shape
    if tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must be larger than twice the overlap ({overlap})")
    if h <= tile and w <= tile:
        out = fn(x)
        if progress:
            progress(1, 1)
        return out

    def out_px(n: int) -> int:
        return round(n * scale)

    th, rows = plan_tiles(h, tile, overlap, multiple)
    tw, cols = plan_tiles(w, tile, overlap, multiple)
    out = weight = None
    places = [(y, x0) for y in rows for x0 in cols]
    done, total = 0, len(places)
    for (y, x0), piece in zip(places, _pieces(fn, x, places, th, tw, workers)):
        piece = piece.float().cpu()
        if out is None:  # the output's channels are known once fn has run
            # channels-last, so that the finished image is (H, W, C) in memory as photos are
            out = torch.zeros(1, piece.shape[1], out_px(h), out_px(w)).contiguous(memory_format=torch.channels_last)
            weight = torch.zeros(1, 1, out_px(h), out_px(w))
        wy = _ramp(out_px(th), out_px(overlap), y == 0, y + th >= h)
        wx = _ramp(out_px(tw), out_px(overlap), x0 == 0, x0 + tw >= w)
        oy, ox = out_px(y), out_px(x0)
        blend = wy[:, None] * wx[None, :]
        out[..., oy : oy + out_px(th), ox : ox + out_px(tw)] += piece * blend
        weight[..., oy : oy + out_px(th), ox : ox + out_px(tw)] += blend
        done += 1
        if progress:
            progress(done, total)
    return out.div_(weight)

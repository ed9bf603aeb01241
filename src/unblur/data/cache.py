"""Training pairs synthesised once and stored on disk, for training where the cores are the budget.

Simulating a 6-DoF exposure costs about as much CPU time per crop as a training step of a small
network spends on it; on a machine with two cores, synthesising on the fly takes that time from the
network at every step. A cache holds ``pairs`` (blurred, sharp) crops of side ``crop`` made by
:class:`~unblur.data.synthetic.SyntheticPairs` (so the same preset, margins and flat-crop rejection),
in shards of ``shard`` pairs: ``shard-00000.npy`` ... (uint8, (n, 2, crop, crop, 3): blurred, sharp)
and ``cache.json`` (what made it), written last. Shard ``k`` is ``SyntheticPairs(batch=shard)[k]``:
the same command writes the same files, an interrupted build resumes at the first missing shard, and
every file is written atomically.

:class:`CachedPairs` serves training steps from a cache as :class:`SyntheticPairs` does from photos:
item ``s`` is a batch of random ``data.crop`` windows of random cached pairs, flipped/rotated,
drawn from generators seeded ``(seed, s, offset + i, 2)``, so runs resume exactly and data-parallel
processes split one batch.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from unblur.atomic import atomic_write

FORMAT = 1


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.npy"


def _make_shard(args) -> tuple[int, float]:
    """Worker: synthesise shard ``k`` and write it; returns (k, seconds)."""
    folder, out, preset, crop, shard, seed, photo_side, k = args
    from unblur.data.synthetic import SyntheticPairs

    torch.set_num_threads(1)
    t0 = time.time()
    images = _images(folder)
    blurred, sharp = SyntheticPairs(images, crop, shard, seed, preset, photo_side=photo_side)[k]
    pairs = torch.stack([blurred, sharp], dim=1).permute(0, 1, 3, 4, 2).mul(255).round().clamp(0, 255).to(torch.uint8)
    with atomic_write(Path(out) / _shard_name(k), suffix=".npy") as tmp:
        np.save(tmp, pairs.numpy())
    return k, time.time() - t0


_IMAGES: dict = {}


def _images(folder: str) -> list[np.ndarray]:
    """The photos of ``folder``, decoded once per process."""
    if folder not in _IMAGES:
        from unblur.data.synthetic import load_folder

        _IMAGES[folder] = load_folder(folder)
    return _IMAGES[folder]


def build_cache(
    folder: str | Path,
    out: str | Path,
    preset: str,
    pairs: int,
    crop: int = 176,
    seed: int = 0,
    shard: int = 256,
    workers: int = 2,
    progress=None,
    photo_side: tuple[float, float] | None = None,
) -> dict:
    """Write (or finish) a cache of ``pairs`` crops of ``preset`` from the photos of ``folder`` into ``out``.

    ``photo_side`` (lo, hi): each crop's photo seen at a random scale first (``SyntheticPairs``); None: as it is.

    ``progress(done, total)`` is called after each shard. Returns the cache's description (``cache.json``).
    A folder that holds a cache made with other settings is refused (ValueError).
    """
    from unblur.data.synthetic import presets

    presets(preset)  # an unknown preset fails here, before any work
    out = Path(out)
    info = {
        "format": FORMAT,
        "preset": preset,
        "pairs": int(pairs),
        "crop": int(crop),
        "seed": int(seed),
        "shard": int(shard),
        "photos": Path(folder).name,
        "photo_count": len(_images(str(folder))),
    }
    if photo_side is not None:  # recorded only when set, so caches made before the option still match
        info["photo_side"] = [float(v) for v in photo_side]
    done_file = out / "cache.json"
    if done_file.exists():
        old = json.loads(done_file.read_text())
        same = {k: v for k, v in old.items() if k != "seconds"} == info
        if not same:
            raise ValueError(f"{out} holds a cache made with other settings ({old}); choose another folder")
        return old
    plan = out / "plan.json"  # so that a resumed build cannot silently mix settings either
    if plan.exists() and json.loads(plan.read_text()) != info:
        raise ValueError(f"{out} holds part of a cache made with other settings; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(plan) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1))
    count = -(-pairs // shard)
    todo = [k for k in range(count) if not (out / _shard_name(k)).exists()]
    t0 = time.time()
    jobs = [(str(folder), str(out), preset, crop, shard, seed, photo_side, k) for k in todo]
    finished = count - len(todo)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_make_shard, jobs):
                finished += 1
                if progress:
                    progress(finished, count)
    else:
        for job in jobs:
            _make_shard(job)
            finished += 1
            if progress:
                progress(finished, count)
    info["seconds"] = round(time.time() - t0, 1)
    with atomic_write(done_file) as tmp:  # written last: its presence marks a finished cache
        Path(tmp).write_text(json.dumps(info, indent=1))
    plan.unlink(missing_ok=True)
    return info


class CachedPairs(torch.utils.data.Dataset):
    """Item ``s``: the batch ``(blurred, sharp)`` for training step ``s``, each (B, 3, crop, crop) in [0, 1],
    random windows of a cache written by :func:`build_cache` (``crop`` at most the cache's side).

    Sample ``i`` of step ``s`` comes from a generator seeded ``(seed, s, offset + i, 2)``: which cached
    pair, where the window lies, and which of the 8 flips/rotations of the square.
    """

    def __init__(self, folder: str | Path, crop: int = 128, batch: int = 8, seed: int = 0, offset: int = 0):
        self.folder = Path(folder)
        done = self.folder / "cache.json"
        if not done.exists():
            raise FileNotFoundError(f"{folder}: no finished training-pair cache here (make one with `unblur cache`)")
        self.info = json.loads(done.read_text())
        if crop > self.info["crop"]:
            raise ValueError(f"training crop {crop} is larger than the cached pairs ({self.info['crop']})")
        self.crop, self.batch, self.seed, self.offset = crop, batch, seed, offset
        self.count = self.info["pairs"]
        self._shards: dict[int, np.ndarray] = {}  # opened lazily: each data-loader worker maps its own

    def __len__(self) -> int:
        return 10**9

    def _pair(self, index: int) -> np.ndarray:
        k, j = divmod(index, self.info["shard"])
        if k not in self._shards:
            self._shards[k] = np.load(self.folder / _shard_name(k), mmap_mode="r")
        return self._shards[k][j]

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        side = self.info["crop"]
        for i in range(self.batch):
            rng = np.random.default_rng([self.seed, int(step), self.offset + i, 2])
            pair = self._pair(int(rng.integers(self.count)))
            y, x = (int(v) for v in rng.integers(side - self.crop + 1, size=2))
            window = pair[:, y : y + self.crop, x : x + self.crop]  # (2, crop, crop, 3)
            window = np.rot90(window, int(rng.integers(4)), axes=(1, 2))
            if rng.random() < 0.5:
                window = window[:, :, ::-1]
            out.append(np.ascontiguousarray(window))
        pairs = torch.from_numpy(np.stack(out)).permute(1, 0, 4, 2, 3).float() / 255.0  # (2, B, 3, crop, crop)
        return pairs[0].contiguous(), pairs[1].contiguous()

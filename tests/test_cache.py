"""Training pairs synthesised once (`unblur cache`, ``data.cache``) and photos seen at a random scale (``photo_side``)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from unblur.data.cache import CachedPairs, build_cache
from unblur.data.synthetic import SyntheticPairs, _random_window, load_folder


def checkerboard(h: int, w: int) -> np.ndarray:
    """A 1-pixel black/white checkerboard, (h, w, 3) uint8: grey 127/128 once averaged over even boxes."""
    board = ((np.add.outer(np.arange(h), np.arange(w)) % 2) * 255).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def test_photo_side_sees_a_large_photo_downscaled_and_leaves_a_small_one_as_it_is():
    big, small = checkerboard(512, 384), checkerboard(40, 48)
    # long side 512 seen at 128: a 4x reduction, each 4x4 box of the board averages to grey
    window = _random_window([big], 32, np.random.default_rng(0), photo_side=(128, 128))
    assert window.shape == (32, 32, 3) and np.abs(window.astype(int) - 127.5).max() <= 1
    plain = _random_window([big], 32, np.random.default_rng(0))
    assert set(np.unique(plain)) == {0, 255}
    # never upscaled: a photo whose long side is already below the drawn length is cut as it is
    assert set(np.unique(_random_window([small], 32, np.random.default_rng(0), photo_side=(256, 512)))) == {0, 255}
    # nor reduced below the window on its short side: 384 / 96 caps the factor at 4 whatever the length drawn
    window = _random_window([big], 96, np.random.default_rng(0), photo_side=(16, 16))
    assert window.shape == (96, 96, 3) and np.abs(window.astype(int) - 127.5).max() <= 1
    with pytest.raises(ValueError, match="photo_side"):
        SyntheticPairs([big], crop=16, photo_side=(300, 200))


def test_photo_side_off_keeps_the_pairs_of_earlier_seeds(sharp_folder):
    """The scale is drawn only when asked for: without it, a seed gives the windows it gave before the option."""
    images = load_folder(sharp_folder)
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(5):
        img = images[int(rng_a.integers(len(images)))]
        y, x = int(rng_a.integers(img.shape[0] - 40 + 1)), int(rng_a.integers(img.shape[1] - 40 + 1))
        assert np.array_equal(_random_window(images, 40, rng_b), img[y : y + 40, x : x + 40])


def test_cache_is_deterministic_resumes_and_refuses_other_settings(sharp_folder, tmp_path):
    out = tmp_path / "cache"
    info = build_cache(sharp_folder, out, "realistic+uniform-kernel", pairs=6, crop=40, seed=3, shard=4, workers=1)
    assert info["pairs"] == 6 and "photo_side" not in info  # caches made before the option still compare equal
    first = [np.load(out / f"shard-0000{k}.npy") for k in range(2)]
    assert first[0].shape == (4, 2, 40, 40, 3) and first[1].shape == (4, 2, 40, 40, 3) and first[0].dtype == np.uint8
    blurred, sharp = SyntheticPairs(load_folder(sharp_folder), 40, 4, 3, "realistic+uniform-kernel")[1]
    assert np.array_equal(first[1][:, 1], (sharp.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())
    assert np.array_equal(first[1][:, 0], (blurred.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy())
    # an interrupted build (a shard and the finished mark missing) resumes to the same files
    (out / "shard-00001.npy").unlink()
    (out / "cache.json").unlink()
    build_cache(sharp_folder, out, "realistic+uniform-kernel", pairs=6, crop=40, seed=3, shard=4, workers=1)
    assert np.array_equal(np.load(out / "shard-00001.npy"), first[1])
    with pytest.raises(ValueError, match="other settings"):
        build_cache(sharp_folder, out, "realistic", pairs=6, crop=40, seed=3, shard=4, workers=1)
    with pytest.raises(ValueError, match="other settings"):
        build_cache(sharp_folder, out, "realistic+uniform-kernel", 6, 40, 3, 4, 1, photo_side=(64, 96))
    # training windows: shapes, values in [0, 1], the same batch for the same step
    pairs = CachedPairs(out, crop=32, batch=3, seed=0)
    b, s = pairs[5]
    assert b.shape == s.shape == (3, 3, 32, 32) and 0 <= b.min() and b.max() <= 1
    assert torch.equal(pairs[5][0], b) and not torch.equal(pairs[6][0], b)
    with pytest.raises(ValueError, match="larger than the cached pairs"):
        CachedPairs(out, crop=48)


def test_cache_records_the_photo_scale_and_the_command_checks_it(sharp_folder, tmp_path):
    out = tmp_path / "scaled"
    build_cache(sharp_folder, out, "uniform-kernel", pairs=4, crop=24, seed=0, shard=4, workers=1, photo_side=(48, 64))
    assert json.loads((out / "cache.json").read_text())["photo_side"] == [48.0, 64.0]
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(checkerboard(256, 256)).save(big / "board.png")
    r = subprocess.run(
        [sys.executable, "-m", "unblur", "cache", str(big), "-o", str(tmp_path / "bad"), "--photo-side", "64", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0 and "--photo-side wants two lengths" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(
        [sys.executable, "-m", "unblur", "cache", str(big), "-o", str(tmp_path / "ok"), "--preset", "uniform-kernel",
         "--pairs", "2", "--crop", "24", "--photo-side", "64,64", "--workers", "1", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    sharp = np.load(tmp_path / "ok" / "shard-00000.npy")[:, 1]  # the board seen 4x smaller: grey
    assert np.abs(sharp.astype(int) - 127.5).max() <= 1

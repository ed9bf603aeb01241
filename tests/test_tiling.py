import numpy as np
import torch
import torch.nn.functional as F

from unblur.tiling import run_tiled


def box3(x):
    """A purely local operator (3x3 mean, replicate borders)."""
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def test_tiling_is_exact_for_local_operators():
    x = torch.rand(1, 3, 70, 101)
    whole = box3(x)
    tiled = run_tiled(box3, x, tile=32, overlap=8)
    # tile edges that are not image edges see different borders, but the blend weight is
    # zero at the outermost pixel of each tile, so only interior values count
    assert torch.allclose(tiled, whole, atol=1e-6)


def test_tiling_with_the_default_model_is_close_to_whole_image():
    from unblur.restore import Restorer

    rng = np.random.default_rng(0)
    from conftest import textured

    img = textured(200, 260, seed=3).astype(np.float32) / 255 + rng.normal(0, 0.01, (200, 260, 3)).astype(np.float32)
    img = np.clip(img, 0, 1)
    whole = Restorer(tile=0, device="cpu").restore(img)
    tiled = Restorer(tile=128, device="cpu").restore(img)
    diff = np.abs(whole - tiled)
    assert tiled.shape == img.shape
    assert diff.mean() < 2e-3 and np.percentile(diff, 99) < 2e-2, (diff.mean(), np.percentile(diff, 99))

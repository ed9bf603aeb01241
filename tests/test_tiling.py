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
    """The network's channel attention pools over the whole input, so tiles cannot match the
    whole image exactly; the difference must stay small everywhere, seams included."""
    from unblur.demo import SAMPLES
    from unblur.io import read_image
    from unblur.restore import Restorer

    img = read_image(SAMPLES / "coffee-blurred.png")[0][:240, :320]
    whole = Restorer(tile=0, device="cpu").restore(img)
    tiled = Restorer(tile=192, overlap=48, device="cpu").restore(img)
    assert tiled.shape == img.shape
    # image borders are padded differently by the two paths (bottom/right reflection to a
    # multiple of 16), so compare away from them; tile seams lie well inside this region
    diff = np.abs(whole - tiled)[16:-16, 16:-16]
    assert diff.mean() < 0.006 and np.percentile(diff, 99) < 0.05, (diff.mean(), np.percentile(diff, 99))

"""Metrics against independent implementations written here from the published definitions."""

import numpy as np
import pytest

from unblur.metrics import psnr, ssim
from unblur.metrics.psnr import rgb_to_y


def pair(h=23, w=29, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    return a, b


def reference_psnr(a, b):
    se = sum((float(x) - float(y)) ** 2 for x, y in zip(a.ravel(), b.ravel()))
    return 10 * np.log10(255**2 / (se / a.size))


def test_psnr_matches_the_definition_and_quantises_floats():
    a, b = pair()
    assert psnr(a, b) == pytest.approx(reference_psnr(a, b), abs=1e-10)
    # floats are rounded to 8 bits first, as saving a PNG would do
    assert psnr(a / 255.0 + 0.001, b / 255.0) == pytest.approx(reference_psnr(a, b), abs=1e-10)
    assert psnr(a, a) == float("inf")


def test_psnr_y_channel_uses_matlab_bt601():
    assert rgb_to_y(np.array([[[255.0, 0, 0]]]))[0, 0, 0] == pytest.approx(81.481)
    a, b = pair()
    ya = 16 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255
    yb = 16 + (65.481 * b[..., 0] + 128.553 * b[..., 1] + 24.966 * b[..., 2]) / 255
    ref = 10 * np.log10(255**2 / np.mean((ya - yb) ** 2))
    assert psnr(a, b, y_channel=True) == pytest.approx(ref, abs=1e-9)
    # BT.709 luma (a common mistake) would give another figure
    y709a = 16 + (46.559 * a[..., 0] + 156.629 * a[..., 1] + 15.812 * a[..., 2]) / 255
    y709b = 16 + (46.559 * b[..., 0] + 156.629 * b[..., 1] + 15.812 * b[..., 2]) / 255
    assert abs(psnr(a, b, y_channel=True) - 10 * np.log10(255**2 / np.mean((y709a - y709b) ** 2))) > 1e-3
    assert psnr(a, b, crop_border=3) == pytest.approx(reference_psnr(a[3:-3, 3:-3], b[3:-3, 3:-3]), abs=1e-10)


def reference_ssim_channel(x, y, pad_replicate):
    """Wang et al. (2004), eq. 13-14, with an 11x11 Gaussian window (sigma 1.5), by explicit loops."""
    r = np.arange(11) - 5
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    if pad_replicate:
        x, y = np.pad(x, 5, mode="edge"), np.pad(y, 5, mode="edge")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (g * px).sum(), (g * py).sum()
            vx, vy = (g * (px - mx) ** 2).sum(), (g * (py - my) ** 2).sum()
            cov = (g * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return np.mean(values)


@pytest.mark.parametrize("variant, replicate", [("basicsr", False), ("matlab", True)])
def test_ssim_matches_the_definition(variant, replicate):
    a, b = pair(19, 24)
    ref = np.mean([reference_ssim_channel(a[..., c].astype(float), b[..., c].astype(float), replicate) for c in range(3)])
    assert ssim(a, b, variant) == pytest.approx(ref, abs=1e-7)
    # the other border handling gives a measurably different number on so small an image
    other = "matlab" if variant == "basicsr" else "basicsr"
    assert abs(ssim(a, b, other) - ref) > 1e-4


def test_ssim_basicsr_equals_scikit_image():
    from skimage.metrics import structural_similarity

    a, b = pair(40, 50, seed=2)
    ref = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )
    assert ssim(a, b, "basicsr") == pytest.approx(ref, abs=1e-7)
    assert ssim(a, a) == pytest.approx(1.0)


def test_clear_errors():
    a, b = pair()
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(a, b[:-1])
    with pytest.raises(ValueError, match="outside"):
        psnr(a * 1.0, b / 255.0)  # floats on a 0..255 scale
    with pytest.raises(ValueError, match="unknown SSIM variant"):
        ssim(a, b, "fancy")


def test_realblur_alignment_recovers_a_known_warp_and_scale():
    import cv2

    from unblur.demo import SAMPLES
    from unblur.io import read_image
    from unblur.metrics.realblur import align, realblur_psnr_ssim

    gt = read_image(SAMPLES / "chelsea-sharp.png")[0]
    h, w = gt.shape[:2]
    warp = np.array([[1.0, 0.004, 1.6], [-0.003, 1.0, -1.1], [0, 0, 1]], np.float32)
    moved = cv2.warpPerspective(gt, warp, (w, h), borderMode=cv2.BORDER_REFLECT) * 0.9
    a = align(moved, gt)
    assert np.allclose(a.warp[:2], warp[:2], atol=0.02)
    assert a.scale == pytest.approx(1 / 0.9, rel=0.02)
    aligned_psnr, aligned_ssim = realblur_psnr_ssim(moved, gt)
    assert aligned_psnr > psnr(moved, gt) + 10 and aligned_ssim > ssim(moved, gt) + 0.1


def test_eval_command(tmp_path, capsys):
    from PIL import Image

    from unblur.cli import main

    a, b = pair(32, 40)
    for d, img in (("pred", a), ("gt", b)):
        (tmp_path / d).mkdir()
        Image.fromarray(img).save(tmp_path / d / "x.png")
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert f"PSNR {psnr(a, b):.2f} dB" in out and "SSIM basicsr" in out
    Image.fromarray(a).save(tmp_path / "pred" / "y.png")
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 2
    assert "no ground truth" in capsys.readouterr().err


def test_niqe_prefers_sharp_photos_and_needs_no_network():
    from unblur.demo import SAMPLES, sample_names
    from unblur.io import read_image
    from unblur.metrics.niqe import niqe

    for name in sample_names():  # photos the pristine model was not fitted on
        sharp, blurred = (read_image(SAMPLES / f"{name}-{kind}.png")[0] for kind in ("sharp", "blurred"))
        assert niqe(sharp) < niqe(blurred), name
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe(np.zeros((50, 200, 3), np.float32))


def test_lpips_reports_unavailable_without_weights(monkeypatch, tmp_path):
    from unblur.metrics.lpips import LPIPSUnavailable, load_lpips

    monkeypatch.delenv("UNBLUR_LPIPS_WEIGHTS", raising=False)
    with pytest.raises(LPIPSUnavailable, match="UNBLUR_LPIPS_WEIGHTS"):
        load_lpips()
    monkeypatch.setenv("UNBLUR_LPIPS_WEIGHTS", str(tmp_path / "alex.pth"))
    with pytest.raises(LPIPSUnavailable, match="not found"):
        load_lpips()


def test_lpips_loads_local_files_in_the_published_layouts(monkeypatch, tmp_path):
    """Files laid out as torchvision's AlexNet and the authors' alex.pth (random values here: no weights ship)."""
    import torch

    from unblur.metrics.lpips import CHANNELS, AlexFeatures, load_lpips, lpips

    torch.manual_seed(0)
    alex = {f"features.{k}": v for k, v in AlexFeatures().features.state_dict().items()}
    alex["classifier.1.weight"] = torch.zeros(2, 2)  # the classifier is present in the real file and ignored
    torch.save(alex, tmp_path / "alexnet.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}, tmp_path / "alex.pth")
    monkeypatch.setenv("UNBLUR_ALEXNET_WEIGHTS", str(tmp_path / "alexnet.pth"))
    monkeypatch.setenv("UNBLUR_LPIPS_WEIGHTS", str(tmp_path / "alex.pth"))
    model = load_lpips()
    a, b = (x / 255.0 for x in pair(64, 64))
    assert lpips(model, a, a) == pytest.approx(0.0, abs=1e-7)
    d = lpips(model, a, b)
    assert d > 0 and d == pytest.approx(lpips(model, b, a), rel=1e-5)

"""Blur formation physics: continuous exposure, camera response, saturation, noise."""

import numpy as np
import pytest
import torch
from conftest import textured

from unblur.blur.camera import gamma_to_linear, jpeg, poisson_gaussian_noise, saturate
from unblur.blur.exposure import MovingObject, expose, partial_exposures, sharp_frame
from unblur.blur.synth import PRESETS, convolve
from unblur.blur.trajectory import CameraPath, camera_path, homographies


def photo(h=96, w=128, seed=0):
    return textured(h, w, seed).astype(np.float32) / 255


def test_zero_motion_returns_the_input():
    lin = gamma_to_linear(torch.from_numpy(photo())).numpy()
    still = CameraPath(np.zeros((9, 3)), np.zeros((9, 3)))
    assert np.allclose(expose(lin, homographies(still, 128, 96)), lin, atol=1e-6)


def test_pure_translation_equals_convolution_with_a_line_kernel():
    """A camera path that only shifts the image by 0..8 px horizontally = a horizontal box blur."""
    lin = gamma_to_linear(torch.from_numpy(photo())).numpy()
    n = 9
    shifts = np.arange(n) - n // 2
    hs = np.stack([np.array([[1.0, 0, s], [0, 1, 0], [0, 0, 1]]) for s in shifts])
    exposed = expose(lin, hs)
    kernel = np.zeros((9, 9), np.float32)
    kernel[4, :] = 1 / 9
    conv = convolve(torch.from_numpy(lin.transpose(2, 0, 1))[None], torch.from_numpy(kernel)[None], "reflect")[0]
    conv = conv.permute(1, 2, 0).numpy()
    m = 8  # away from the borders, which the two handle differently
    assert np.abs(exposed[m:-m, m:-m] - conv[m:-m, m:-m]).max() < 1e-5


def test_roll_blurs_corners_more_than_the_centre():
    path = CameraPath(np.stack([np.zeros(9), np.zeros(9), np.deg2rad(np.linspace(-1, 1, 9))], axis=1), np.zeros((9, 3)))
    hs = homographies(path, 201, 201)
    centre, corner = np.array([100, 100, 1.0]), np.array([0, 0, 1.0])

    def travel(p):
        q = hs @ p
        q = q[:, :2] / q[:, 2:]
        return np.linalg.norm(q[0] - q[-1])

    assert travel(centre) < 1e-6 and travel(corner) > 2


def test_a_moving_object_blurs_its_path_and_nothing_else():
    """Still camera, a square moving 8 px right: its trail is blurred, far pixels are untouched,
    and the sharp target (middle sub-frame) has the object where the photo has it."""
    lin = gamma_to_linear(torch.from_numpy(photo())).numpy()
    mask = np.zeros((96, 128), np.float32)
    mask[30:60, 40:70] = 1
    n = 9
    obj = MovingObject(mask, np.stack([np.arange(n) - n // 2, np.zeros(n)], axis=1).astype(float))
    still = homographies(CameraPath(np.zeros((n, 3)), np.zeros((n, 3))), 128, 96)
    blurred = expose(lin, still, obj)
    assert np.allclose(blurred[:, 90:], lin[:, 90:], atol=1e-6) and np.allclose(blurred[70:], lin[70:], atol=1e-6)
    inside = np.abs(blurred[35:55, 45:65] - lin[35:55, 45:65]).mean()
    assert inside > 5 * np.abs(blurred[:, 90:] - lin[:, 90:]).mean() + 1e-3
    assert np.allclose(sharp_frame(lin, still, n // 2, obj)[30:60, 40:70], lin[30:60, 40:70], atol=1e-6)


def test_sharp_target_can_be_the_first_subframe():
    first = camera_path(np.random.default_rng(5), 11, sharp_at=0.0)
    middle = camera_path(np.random.default_rng(5), 11)
    assert np.allclose(first.rotations[0], 0) and np.allclose(middle.rotations[5], 0)
    # the same motion, only seen from another reference pose
    assert np.allclose(np.diff(first.rotations, axis=0), np.diff(middle.rotations, axis=0))


def test_partial_exposures_grow_to_the_full_blur():
    lin = gamma_to_linear(torch.from_numpy(photo())).numpy()
    hs = homographies(camera_path(np.random.default_rng(3), 12, rotation_deg=1.0), 128, 96)
    parts = partial_exposures(lin, hs, [0.25, 0.5, 1.0])
    assert np.allclose(parts[-1], expose(lin, hs), atol=1e-6)
    blur = [np.abs(p - parts[0]).mean() for p in parts]
    assert blur[0] == 0 and blur[1] < blur[2]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_are_seeded(preset):
    make = PRESETS[preset]().make
    a, sa, _ = make(photo(), np.random.default_rng(11))
    b, sb, _ = make(photo(), np.random.default_rng(11))
    c, _, _ = make(photo(), np.random.default_rng(12))
    assert np.array_equal(a, b) and np.array_equal(sa, sb) and not np.array_equal(a, c)
    assert a.shape == sa.shape == (96, 128, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1


def test_saturation_clips_after_integration():
    lin = torch.tensor([0.2, 0.5, 0.9])
    assert torch.allclose(saturate(lin, 2.0), torch.tensor([0.4, 1.0, 1.0]))
    # a point light over half the exposure: clipping after averaging keeps it bright
    assert saturate(torch.tensor([(4.0 + 0.0) / 2]), 1.0) == 1.0


def test_poisson_gaussian_noise_statistics():
    g = torch.Generator().manual_seed(0)
    for level in (0.1, 0.5):
        x = torch.full((200_000,), level)
        y = poisson_gaussian_noise(x, shot=0.01, read=0.02, generator=g)
        assert abs(y.mean() - level) < 1e-3
        assert abs(y.var() - (0.01 * level + 0.02**2)) / (0.01 * level + 0.02**2) < 0.03


def test_jpeg_round_trip_loses_a_little():
    x = torch.from_numpy(photo().transpose(2, 0, 1))
    y = jpeg(x, 90)
    err = (x - y).abs().mean()
    assert y.shape == x.shape and 0 < err < 0.03
    assert (x - jpeg(x, 30)).abs().mean() > err

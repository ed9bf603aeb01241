import numpy as np
import pytest
import torch

from unblur.blur.camera import (
    gamma_to_linear,
    linear_to_gamma,
    linear_to_srgb,
    srgb_to_linear,
)
from unblur.blur.kernels import (
    disk_kernel,
    gaussian_kernel,
    linear_motion_kernel,
    motion_kernel,
)
from unblur.blur.synth import UniformKernelBlur, blur_image, convolve


def centre_of_mass(k):
    y, x = np.mgrid[: k.shape[0], : k.shape[1]]
    return (k * y).sum(), (k * x).sum()


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: motion_kernel(int(rng.choice([9, 15, 25])), rng),
        lambda rng: linear_motion_kernel(15, 9.0, rng.uniform(0, 180)),
        lambda rng: gaussian_kernel(11, 2.0),
        lambda rng: disk_kernel(11, 3.5),
    ],
)
def test_kernels_sum_to_one_and_are_centred(make):
    rng = np.random.default_rng(3)
    for _ in range(20):
        k = make(rng)
        c = (k.shape[0] - 1) / 2
        assert k.dtype == np.float32 and k.min() >= 0
        assert abs(k.sum() - 1) < 1e-5
        assert np.allclose(centre_of_mass(k), (c, c), atol=1e-3)


def test_motion_kernels_are_seeded():
    a = motion_kernel(21, np.random.default_rng(7))
    b = motion_kernel(21, np.random.default_rng(7))
    c = motion_kernel(21, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_convolve_matches_direct_sum():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((2, 3, 12, 13)).astype(np.float32))
    k = torch.from_numpy(rng.random((2, 5, 5)).astype(np.float32))
    out = convolve(x, k, padding="valid")
    ref = np.zeros((2, 3, 8, 9))
    for b in range(2):
        for i in range(8):
            for j in range(9):
                # true convolution: out[i, j] = sum_uv k[u, v] x[i + 4 - u, j + 4 - v]
                for u in range(5):
                    for v in range(5):
                        ref[b, :, i, j] += k[b, u, v].item() * x[b, :, i + 4 - u, j + 4 - v].numpy()
    assert np.allclose(out.numpy(), ref, atol=1e-5)


def test_delta_kernel_and_no_noise_returns_input():
    spec = UniformKernelBlur(max_noise=0.0, quantise_bits=None)
    x = torch.rand(1, 3, 20, 20)
    delta = torch.zeros(1, 5, 5)
    delta[0, 2, 2] = 1
    out = spec.render(x, delta, torch.zeros(1))
    assert torch.allclose(out, x, atol=1e-5)


def test_blur_averages_linear_light():
    # A half-black half-white edge blurred by a horizontal box: the mid value must be
    # the average of linear intensities (0.5 -> 0.73 stored), not of stored values (0.5).
    spec = UniformKernelBlur(max_noise=0.0, quantise_bits=None)
    x = torch.zeros(1, 3, 9, 9)
    x[..., 5:] = 1.0
    box = torch.zeros(1, 9, 9)
    box[0, 4, :] = 1 / 9
    out = spec.render(x, box, torch.zeros(1), padding="replicate")
    mid = out[0, 0, 4, 4].item()  # 4 of 9 taps see white
    assert abs(mid - (4 / 9) ** (1 / 2.2)) < 1e-4
    assert abs(mid - 4 / 9) > 0.1


def test_camera_curves_invert():
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    assert torch.allclose(linear_to_gamma(gamma_to_linear(x)), x, atol=1e-4)


def test_blur_image_is_reproducible_and_noisy_as_asked():
    sharp = np.full((64, 64, 3), 0.5, np.float32)
    a, meta = blur_image(sharp, np.random.default_rng([1, 2]))
    b, _ = blur_image(sharp, np.random.default_rng([1, 2]))
    c, _ = blur_image(sharp, np.random.default_rng([1, 3]))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(meta["kernel"].sum() - 1) < 1e-5 and meta["kernel"].shape[0] % 2 == 1
    # on a flat image only noise (and 8-bit rounding) remains
    assert abs(a.std() - np.sqrt(meta["noise_sigma"] ** 2 + 1 / 12 / 255**2)) < 0.002

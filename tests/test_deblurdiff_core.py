import pytest
import torch

from unblur.methods.deblurdiff_core import LKPN, eac, timestep_embedding


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: extra threads only fight each other (and anything else on the CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def eac_reference(z, kernels, k):
    """The EAC formula, one pixel and one tap at a time, with zeros outside the latent."""
    b, c, h, w = z.shape
    r = k // 2
    out = z.clone()
    for n in range(b):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    total = 0.0
                    for u in range(k):
                        for v in range(k):
                            y, x = i + u - r, j + v - r
                            if 0 <= y < h and 0 <= x < w:
                                total += kernels[n, ch * k * k + u * k + v, i, j].item() * z[n, ch, y, x].item()
                    out[n, ch, i, j] += total
    return out


def delta_kernels(z, k, u, v, weight=1.0):
    b, c, h, w = z.shape
    kernels = torch.zeros(b, c, k, k, h, w, dtype=z.dtype)
    kernels[:, :, u, v] = weight
    return kernels.view(b, c * k * k, h, w)


@pytest.mark.parametrize("k", [3, 5])
def test_eac_matches_loop_reference(k):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64)
    kernels = torch.randn(2, 2 * k * k, 5, 6, generator=g, dtype=torch.float64)
    assert torch.allclose(eac(z, kernels, k), eac_reference(z, kernels, k), rtol=0, atol=1e-10)


def test_zero_kernel_is_identity():
    z = torch.randn(1, 4, 7, 9)
    assert torch.equal(eac(z, torch.zeros(1, 4 * 25, 7, 9)), z)


def test_centred_delta_scales():
    z = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    out = eac(z, delta_kernels(z, 5, 2, 2, weight=-0.3))
    assert torch.allclose(out, 0.7 * z, rtol=0, atol=1e-12)


@pytest.mark.parametrize("du, dv", [(1, 0), (0, -2), (-1, 2), (2, 1)])
def test_shifted_delta_adds_shifted_latent_with_zero_fill(du, dv):
    k, r = 5, 2
    z = torch.randn(1, 3, 6, 7, dtype=torch.float64)
    shifted = torch.zeros_like(z)  # shifted[i, j] = z[i + du, j + dv], zero where that falls outside
    h, w = z.shape[-2:]
    shifted[..., max(0, -du) : h - max(0, du), max(0, -dv) : w - max(0, dv)] = z[
        ..., max(0, du) : h + min(0, du), max(0, dv) : w + min(0, dv)
    ]
    out = eac(z, delta_kernels(z, k, r + du, r + dv))
    assert torch.equal(out, z + shifted)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_eac_half_precision(dtype):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 4, 8, 8, generator=g)
    kernels = 0.1 * torch.randn(1, 100, 8, 8, generator=g)
    out = eac(z.to(dtype), kernels.to(dtype))
    assert out.dtype == dtype
    assert torch.allclose(out.float(), eac(z, kernels), atol=0.05, rtol=0.02)


def test_eac_rejects_bad_shapes():
    with pytest.raises(ValueError):
        eac(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4 * 9, 8, 8))
    with pytest.raises(ValueError):
        eac(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4 * 16, 8, 8), k=4)


def test_timestep_embedding():
    emb = timestep_embedding(torch.tensor([0, 10, 999]), 33)
    assert emb.shape == (3, 33)
    assert torch.equal(emb[0, :16], torch.ones(16)) and torch.equal(emb[:, -1], torch.zeros(3))
    assert emb.abs().max() <= 1


def test_fresh_lkpn_predicts_zero_kernels_for_odd_sizes():
    torch.manual_seed(0)
    net = LKPN(width=16, levels=2)
    z_blur, z_t = torch.randn(2, 4, 13, 17), torch.randn(2, 4, 13, 17)
    kernels = net(z_blur, z_t, torch.tensor([5, 700]))
    assert kernels.shape == (2, 4 * 25, 13, 17)
    assert torch.equal(kernels, torch.zeros_like(kernels))
    assert torch.equal(eac(z_blur, kernels), z_blur)
    assert net(z_blur[:1], z_t[:1], 3).shape == (1, 100, 13, 17)  # scalar t


def test_lkpn_learns_a_kernel():
    torch.manual_seed(0)
    net = LKPN(width=16, kernel_size=3, levels=2)
    z_blur, z_t = torch.randn(2, 4, 9, 11), torch.randn(2, 4, 9, 11)
    t = torch.tensor([100, 500])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = (eac(z_blur, net(z_blur, z_t, t), k=3) - 0.5 * z_blur).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_deterministic():
    def run():
        torch.manual_seed(3)
        net = LKPN(width=16, kernel_size=3, levels=2)
        torch.nn.init.normal_(net.ending[-1].weight, std=0.01)  # non-zero output, so the check means something
        z_blur, z_t = torch.randn(1, 4, 10, 12), torch.randn(1, 4, 10, 12)
        kernels = net(z_blur, z_t, torch.tensor([42]))
        return kernels, eac(z_blur, kernels, k=3)

    (k1, s1), (k2, s2) = run(), run()
    assert k1.abs().max() > 0
    assert torch.equal(k1, k2) and torch.equal(s1, s2)
    assert LKPN(width=16).config == {"latent_channels": 4, "width": 16, "kernel_size": 5, "levels": 2}

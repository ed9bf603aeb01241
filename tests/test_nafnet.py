import pytest
import torch

from unblur.nn.nafnet import NAFNet


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (64, 48)])
def test_any_size_in_same_size_out(size):
    net = NAFNet(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1)).eval()
    x = torch.rand(2, 3, *size) if min(size) > 1 else torch.rand(1, 3, 4, 4)[..., :1, :1]
    assert net(x).shape == x.shape


def test_fresh_blocks_are_identity():
    net = NAFNet(width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,)).eval()
    block = net.encoders[0][0]
    x = torch.rand(1, 8, 8, 8)
    assert torch.equal(block(x), x)


def test_box_mean_matches_the_boxes_it_describes():
    from unblur.nn.nafnet import box_mean

    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    for kh, kw in [(1, 1), (3, 5), (4, 4), (9, 11), (2, 7)]:
        y = box_mean(x, kh, kw)
        for i in range(9):
            for j in range(11):
                top, left = min(max(i - (kh - 1) // 2, 0), 9 - kh), min(max(j - (kw - 1) // 2, 0), 11 - kw)
                expected = x[..., top : top + kh, left : left + kw].mean((-2, -1))
                assert torch.allclose(y[..., i, j], expected, atol=1e-6), (kh, kw, i, j)


def _randomised(net):
    torch.manual_seed(0)
    for p in net.parameters():
        p.data.normal_(0, 0.3)
    return net.eval()


def test_sca_window_changes_only_maps_larger_than_the_window():
    """A crop no larger than the window gets the whole-map statistics (training unchanged); a larger map gets
    local ones; the weights are the same tensors under the same names."""
    size = {"width": 8, "enc_blocks": (1, 1), "middle_blocks": 1, "dec_blocks": (1, 1)}
    plain = _randomised(NAFNet(**size))
    local = NAFNet(**size, sca_window=32).eval()
    local.load_state_dict(plain.state_dict())
    small, large = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 96, 80)
    with torch.no_grad():
        assert torch.allclose(plain(small), local(small), atol=1e-6)
        assert (plain(large) - local(large)).abs().max() > 1e-3
        assert local(large).shape == large.shape

"""BD-Diff's extractors: token shapes for any size, determinism, and that the two streams differ."""

import pytest
import torch

from unblur.methods.bddiff import BlurDecoupler, sincos_2d

TINY = {"in_channels": 4, "width": 16, "patch": 2, "structure_queries": 6, "blur_queries": 3, "layers": 1, "heads": 2}


@pytest.mark.parametrize("size", [(8, 8), (13, 21), (2, 2)])
def test_token_shapes_do_not_depend_on_the_image_size(size):
    net = BlurDecoupler(**TINY).eval()
    x = torch.randn(2, 4, *size)
    with torch.no_grad():
        s, b = net.both(x)
        assert torch.allclose(s, net.structure(x), atol=1e-6) and torch.allclose(b, net.blur(x), atol=1e-6)
    assert s.shape == (2, 6, 16) and b.shape == (2, 3, 16)
    assert net.sharp_blur(2).shape == b.shape and net.condition(s, b).shape == (2, 9, 16)


def test_same_seed_same_network_and_tokens():
    x = torch.randn(1, 4, 10, 12)
    outs = []
    for _ in range(2):
        torch.manual_seed(4)
        net = BlurDecoupler(**TINY).eval()
        with torch.no_grad():
            outs.append(net.both(x))
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1]))
    assert BlurDecoupler(**BlurDecoupler(**TINY).config).config == TINY


def test_the_tokens_read_the_image():
    """Different images give different tokens, and a gradient reaches the encoder from either stream."""
    net = BlurDecoupler(**TINY)
    a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    assert not torch.allclose(net.structure(a), net.structure(b))
    net.blur(a).sum().backward()
    assert net.encoder.patch.weight.grad.abs().sum() > 0 and net.structure_former.queries.grad is None


def test_position_codes_are_distinct_per_place():
    codes = sincos_2d(4, 5, 16)
    assert codes.shape == (20, 16) and torch.unique(codes, dim=0).shape[0] == 20
    with pytest.raises(ValueError):
        sincos_2d(2, 2, 10)

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

"""Every backbone: any size in, same size out; prior modulation; a tiny config learns."""

import pytest
import torch

from unblur import nn as backbones
from unblur.losses import charbonnier

ARCHS = sorted(backbones.BACKBONES)


def tiny(arch, **extra):
    torch.manual_seed(0)
    return backbones.build(arch, {**backbones.backbone_module(arch).TINY, **extra})


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [(1, 1), (17, 33), (40, 24)])
def test_any_size_in_same_size_out(arch, size):
    net = tiny(arch).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_config_rebuilds_the_same_network(arch):
    import inspect

    net = tiny(arch, prior_dim=16, prior_at="input", prior_init="random")
    # every constructor argument is recorded (register_to_config), so none is rebuilt with its default by accident
    assert set(net.config) == set(inspect.signature(type(net).__init__).parameters) - {"self"}
    assert isinstance(type(net).multiscale, bool)  # the backbone contract (unblur.nn)
    again = backbones.build(arch, net.config)
    again.load_state_dict(net.state_dict())
    x, z = torch.rand(1, 3, 32, 32), torch.randn(1, 16)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, z), again.eval()(x, z))


@pytest.mark.parametrize("prior_at", ["output", "input"])
@pytest.mark.parametrize("arch", ARCHS)
def test_prior_modulation_is_identity_until_trained_then_changes_the_output(arch, prior_at):
    """prior_init: identity (ours), wherever the prior enters: a plain network's weights give its output."""
    plain, modulated = tiny(arch).eval(), tiny(arch, prior_dim=16, prior_at=prior_at).eval()
    # same weights apart from the prior path, which starts at zero
    missing = modulated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all("prior" in k for k in missing), missing
    x, z = torch.rand(2, 3, 32, 32), torch.randn(2, 16)
    with torch.no_grad():
        base = plain(x)
        assert torch.allclose(modulated(x, z), base, atol=1e-6)
        assert torch.allclose(modulated(x, None), base, atol=1e-6)
        for name, p in modulated.named_parameters():
            if "prior" in name:
                p.normal_(0, 0.05)
        changed = modulated(x, z)
    assert (changed - base).abs().max() > 1e-3
    assert not torch.allclose(changed[0:1], modulated(x[0:1], -z[0:1]))  # the prior, not just the path, matters


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_config_reduces_loss_on_a_fixed_batch(arch):
    """A task every network can learn in a few steps but none solves at initialisation (the networks
    start near the identity, which is already close to optimal for deblurring random noise):
    swapping the colour channels of a smooth image."""
    net = tiny(arch).train()
    torch.manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.rand(4, 3, 32, 32), 5, 1, 2, count_include_pad=False)
    target = x.flip(1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = charbonnier(net(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses

"""The method contract (unblur.methods.base) for every registered architecture, and a method added from outside
the library: trained by the engine and run by the Restorer with no change to library code."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_METHODS, engine_config
from torch import nn

from unblur import methods
from unblur.losses import ImageLoss
from unblur.methods.base import Method
from unblur.nn import BACKBONES, backbone_module
from unblur.nn.configurable import register_to_config
from unblur.train.config import DEFAULTS

NEEDS_DIFFUSERS = {"deblurdiff", "deblurdiff-small", "bd-diff-small"}


def test_every_registered_method_has_a_tiny_configuration():
    assert set(TINY_METHODS) == set(methods.METHODS)  # a new method adds its own in conftest.py


def tiny(arch: str, request) -> Method:
    if arch in NEEDS_DIFFUSERS:
        pytest.importorskip("diffusers")
    config = dict(backbone_module(arch).TINY) if arch in BACKBONES else dict(TINY_METHODS[arch])
    if "sd" in config:
        config["sd"] = str(request.getfixturevalue("tiny_sd")[0])
    torch.manual_seed(0)
    return methods.build(arch, config)


def image(h: int = 21, w: int = 18, seed: int = 0) -> torch.Tensor:
    """A smooth random image (1, 3, h, w) in [0, 1]; odd sizes on purpose."""
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


@pytest.mark.parametrize("arch", methods.names())
def test_declarations_config_and_model_file(arch, request, tmp_path):
    """What the engine and the Restorer read is declared, the recorded config rebuilds the method, and a model
    file of it runs through the Restorer."""
    from unblur.modelfile import read_model_meta, save_model_file
    from unblur.restore import Restorer

    model = tiny(arch, request).eval()
    assert isinstance(model, Method) and methods.method_class(arch) is type(model)
    for flag in ("generative", "predicts_kernels", "transfers_blur", "uses_target_domain"):
        assert isinstance(getattr(type(model), flag), bool), flag
    assert model.low_precision in ("weights", "autocast", None)
    assert model.exposure_fractions is None or all(0 < f < 1 for f in model.exposure_fractions)
    config = json.loads(json.dumps(model.config))  # what a model file stores
    rebuilt = methods.build(arch, config).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = image()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))

    path = save_model_file(tmp_path / f"{arch}.safetensors", model, arch)
    assert read_model_meta(path)["config"] == config
    restorer = Restorer(path, device="cpu", steps=1 if model.generative else None, precision="fp32")
    rgb = image(20, 26).squeeze(0).permute(1, 2, 0).numpy()
    out = restorer.restore(rgb)
    assert out.shape == rgb.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("arch", methods.names())
def test_training_loss_validation_and_inference(arch, request):
    """The engine's calls (training_loss on a batch with what the method declared, validation_output) and the
    Restorer's (restore and image_prior, or sample with its callback, kernels and transfer)."""
    model = tiny(arch, request).train()
    blurred, sharp = image(32, 32, 1), image(32, 32, 2)
    batch = {"blurred": blurred, "sharp": sharp}
    if model.exposure_fractions is not None:
        batch["exposures"] = torch.rand(1, len(model.exposure_fractions), 3, 32, 32)
    if model.uses_target_domain:
        batch["target"] = image(32, 32, 3)
    torch.manual_seed(1)
    loss, terms = model.training_loss(batch, ImageLoss(DEFAULTS["loss"], "cpu"))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    assert all(isinstance(k, str) and isinstance(v, float) for k, v in terms.items())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)

    model.eval()
    x = image()
    with torch.no_grad():
        assert model.validation_output(x, x).shape == x.shape
        if not model.generative:
            out = model.restore(x)
            assert out.shape == x.shape and torch.equal(out, model.restore(x))
            prior = model.image_prior(x, 16)
            if prior is not None:  # shared by the tiles of one image
                assert model.restore(x[..., :16, :16], prior).shape == (1, 3, 16, 16)
            return
        steps = []
        a = model.sample(x, 2, torch.Generator().manual_seed(5), callback=lambda info: steps.append(info["step"]))
        assert a.shape == x.shape and steps == [1, 2]
        assert torch.equal(a, model.sample(x, 2, torch.Generator().manual_seed(5)))
        if model.predicts_kernels:
            _, picture = model.sample(x, 1, torch.Generator().manual_seed(5), kernels=True)
            assert picture.shape == x.shape and 0 <= picture.min() and picture.max() <= 1
        if model.transfers_blur:
            assert model.transfer(x, image(16, 24, 4), 1, torch.Generator().manual_seed(5)).shape == x.shape


# -- a method from outside the library ------------------------------------------------------------------


class ChannelGain(Method):
    """A toy method: a learned gain and offset per colour channel, trained on the configured image loss."""

    @register_to_config
    def __init__(self, channels: int = 3, gain: float = 0.5):
        super().__init__()
        self.gain = nn.Parameter(torch.full((1, channels, 1, 1), gain))
        self.offset = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def restore(self, blurred, prior=None):
        return blurred * self.gain + self.offset

    def training_loss(self, batch, image_loss):
        return image_loss(self.restore(batch["blurred"]), batch["sharp"]), {"gain": self.gain.mean().item()}


@pytest.fixture
def channel_gain():
    methods.register_method("channel-gain", ChannelGain)
    yield "channel-gain"
    del methods.METHODS["channel-gain"]  # the registry is the process's: leave it as it was


def test_a_method_defined_outside_the_library_trains_and_restores(channel_gain, sharp_folder, tmp_path):
    from unblur.restore import Restorer
    from unblur.train.loop import train

    with pytest.raises(ValueError, match="already registered"):
        methods.register_method(channel_gain, ChannelGain)
    cfg = engine_config(sharp_folder, 30, f"model.arch={channel_gain}", "model.gain=0.5", "optim.lr=2e-2", "train.val_every=30")
    summary = train(cfg, tmp_path / "run", quiet=True)
    assert summary["losses"][-1] < 0.5 * summary["losses"][0] and summary["best_val_psnr"] > 10

    restorer = Restorer(tmp_path / "run" / "last.safetensors", device="cpu", precision="fp32")
    assert isinstance(restorer.model, ChannelGain) and restorer.meta["config"] == {"channels": 3, "gain": 0.5}
    gain = restorer.model.gain.detach().flatten()
    assert (gain - 0.5).abs().min() > 0.1  # learned: the gain moved from where it started
    rgb = image(24, 30).squeeze(0).permute(1, 2, 0).numpy()
    expected = np.clip(rgb * gain.numpy() + restorer.model.offset.detach().flatten().numpy(), 0, 1)
    assert np.allclose(restorer.restore(rgb), expected, atol=1e-6)

"""Loading a latent diffusion model from a local diffusers folder: a tiny random one the test builds."""

import shutil
import socket

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from unblur.methods.sd_loading import SDFolderError, load_sd


def test_loads_the_saved_parts_without_touching_the_network(tiny_sd, monkeypatch):
    root, unet, vae = tiny_sd

    def no_network(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    sd = load_sd(root)
    assert all(torch.equal(a, b) for a, b in zip(sd.unet.state_dict().values(), unet.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(sd.vae.state_dict().values(), vae.state_dict().values()))
    assert sd.schedule.prediction == "v_prediction" and sd.scale == vae.config.scaling_factor
    with torch.no_grad():
        latent = sd.vae.encode(torch.rand(1, 3, 16, 16) * 2 - 1).latent_dist.mode()
        eps = sd.unet(latent, torch.tensor([10]), encoder_hidden_states=torch.zeros(1, 1, 8)).sample
    assert latent.shape == eps.shape == (1, 4, 8, 8)


@pytest.mark.parametrize(
    "missing", ["unet/config.json", "vae/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"]
)
def test_a_missing_part_is_named(tiny_sd, tmp_path, missing):
    root = tmp_path / "sd"
    shutil.copytree(tiny_sd[0], root)
    (root / missing).unlink()
    with pytest.raises(SDFolderError, match=missing.replace(".", r"\.")):
        load_sd(root)
    with pytest.raises(SDFolderError, match="not a folder"):
        load_sd(tmp_path / "nowhere")


def test_a_folder_with_only_fp16_weights_loads(tiny_sd, tmp_path):
    """Stable Diffusion repositories often hold only the fp16 variant files."""
    root, unet, _ = tiny_sd
    unet.half().save_pretrained(tmp_path / "sd" / "unet", variant="fp16")
    unet.float()

    shutil.copytree(root / "vae", tmp_path / "sd" / "vae")
    shutil.copytree(root / "scheduler", tmp_path / "sd" / "scheduler")
    sd = load_sd(tmp_path / "sd")
    assert not (tmp_path / "sd" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert torch.allclose(next(sd.unet.parameters()).float(), next(unet.parameters()).half().float())

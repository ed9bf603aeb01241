"""DeblurDiff on a tiny random SD-shaped model: frozen parts stay frozen, the loss falls, sampling is seeded."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_METHODS, engine_config

pytest.importorskip("diffusers")

from unblur.methods.deblurdiff import DeblurDiff
from unblur.methods.latent import adain_colour_fix
from unblur.methods.sd_loading import load_sd


def model(tiny_sd):
    torch.manual_seed(0)
    return DeblurDiff(load_sd(tiny_sd[0]), kernel_size=3, lkpn_width=8)


def batch():
    gen = torch.Generator().manual_seed(3)
    sharp = torch.rand(2, 3, 16, 16, generator=gen)
    return torch.nn.functional.avg_pool2d(sharp, 3, 1, 1, count_include_pad=False), sharp


def test_training_moves_only_the_controlnet_and_lkpn_and_reduces_the_loss(tiny_sd):
    net = model(tiny_sd).train()
    frozen = {n: p.clone() for n, p in net.named_parameters() if n.startswith(("unet.", "vae."))}
    assert frozen and not any(p.requires_grad for n, p in net.named_parameters() if n in frozen)
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert trainable
    opt = torch.optim.Adam(trainable, lr=1e-3)
    blurred, sharp = batch()
    losses = []
    for _ in range(25):
        loss = net.loss(blurred, sharp, generator=torch.Generator().manual_seed(0))  # a fixed noise and t
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(torch.equal(p, frozen[n]) for n, p in net.named_parameters() if n in frozen)


def test_fresh_lkpn_gives_the_blurred_latent_as_z_s(tiny_sd):
    net = model(tiny_sd).eval()
    blurred, _ = batch()
    z_blur = net.encode(blurred)
    _, z_s = net.denoise(torch.randn_like(z_blur), torch.tensor([500, 500]), z_blur)
    assert torch.equal(z_s, z_blur)


def test_sampling_is_deterministic_for_a_seed(tiny_sd):
    net = model(tiny_sd).eval()
    blurred, _ = batch()
    a = net.sample(blurred, steps=3, generator=torch.Generator().manual_seed(7))
    b = net.sample(blurred, steps=3, generator=torch.Generator().manual_seed(7))
    c = net.sample(blurred, steps=3, generator=torch.Generator().manual_seed(8))
    assert a.shape == blurred.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_adain_colour_fix_matches_the_reference_statistics():
    gen = torch.Generator().manual_seed(0)
    image, reference = torch.rand(1, 3, 8, 8, generator=gen) * 0.2, torch.rand(1, 3, 8, 8, generator=gen)
    fixed = adain_colour_fix(image, reference)
    assert torch.allclose(fixed.mean((2, 3)), reference.mean((2, 3)), atol=1e-5)
    assert torch.allclose(fixed.std((2, 3)), reference.std((2, 3)), atol=1e-3)


def test_small_latent_diffusion_model_builds_and_drives_deblurdiff():
    from unblur.methods.small_sd import build_small_sd

    torch.manual_seed(0)
    sd = build_small_sd(vae_widths=[8, 16], unet_widths=[16, 32], cross_attention_dim=16, attention_head_dim=4)
    net = DeblurDiff(sd, kernel_size=3, lkpn_width=8).eval()
    blurred, _ = batch()
    assert net.encode(blurred).shape == (2, 4, 8, 8)  # two VAE levels: downsampling by 2
    out = net.sample(blurred, steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == blurred.shape and torch.isfinite(out).all()


def test_vae_stage_trains_through_the_engine(sharp_folder, tmp_path):
    """The small VAE learns to reconstruct sharp crops with `unblur train`'s engine (method contract)."""
    from unblur.train.loop import train

    vae_stage = ("loss.pixel=l1", "model.arch=small-vae", "model.widths=[8, 16]", "optim.lr=3e-3")
    cfg = engine_config(sharp_folder, 30, *vae_stage, "train.val_every=15", "train.ckpt_every=30")
    summary = train(cfg, tmp_path / "vae", quiet=True)
    assert sum(summary["losses"][-5:]) < 0.8 * sum(summary["losses"][:5]), summary["losses"]
    from unblur.modelfile import load_model_file

    vae, meta = load_model_file(tmp_path / "vae" / "last.safetensors")
    assert meta["arch"] == "small-vae" and meta["step"] == 30
    from unblur.methods.small_sd import build_small_sd

    sd = build_small_sd(unet_widths=[16, 32], cross_attention_dim=16, attention_head_dim=4, vae=vae.vae)
    assert sd.vae is vae.vae


def test_vae_without_middle_attention_round_trips_and_is_checked(tmp_path):
    """``mid_attention: false`` builds a VAE with no self-attention in its middle blocks; a method rebuilt
    from its config gets the same layout, and a VAE file of the other layout is refused in one line."""
    from unblur.methods.small_sd import SmallVAE, load_trained_vae
    from unblur.modelfile import save_model_file

    with_attn, without = SmallVAE(4, [8, 16]), SmallVAE(4, [8, 16], mid_attention=False)
    names = [n for n, _ in without.named_parameters()]
    assert not any(".attentions." in n for n in names) and any(".attentions." in n for n, _ in with_attn.named_parameters())
    x = torch.rand(1, 3, 16, 16)
    assert without.restore(x).shape == x.shape
    path = tmp_path / "vae.safetensors"
    save_model_file(path, without, "small-vae")
    vae = load_trained_vae(str(path), 4, [8, 16], mid_attention=False)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), without.vae.state_dict().values()))
    with pytest.raises(ValueError, match="mid_attention"):
        load_trained_vae(str(path), 4, [8, 16], mid_attention=True)


def test_bundled_vae_is_a_component_not_a_photo_model(tmp_path, photo, capsys):
    """``vae-f2`` loads by name where a VAE file is asked for (its layout as its card says), has a card,
    and is not offered to `unblur deblur`."""
    from unblur.cli import main
    from unblur.methods.small_sd import load_trained_vae
    from unblur.zoo import COMPONENTS, MODELS

    assert not set(COMPONENTS) & set(MODELS) and COMPONENTS["vae-f2"].card.exists()
    vae = load_trained_vae("vae-f2", 12, [32, 64], mid_attention=False)
    assert not any(p.requires_grad for p in vae.parameters())
    assert main(["deblur", str(photo), "-o", str(tmp_path / "out"), "--model", "vae-f2", "-q"]) != 0
    assert "unknown model 'vae-f2'" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="registered component"):
        load_trained_vae("vae-f3")


def test_bundled_prior_fits_the_config_that_steers_it():
    """``prior-f2`` is a component of the sizes ``small-f2.yaml`` states: DeblurDiff builds on it with its UNet
    and VAE frozen (the VAE that of ``vae-f2``)."""
    from pathlib import Path

    from unblur.methods.deblurdiff import DeblurDiffSmall
    from unblur.methods.small_sd import load_trained_vae
    from unblur.train.config import load_config
    from unblur.zoo import COMPONENTS, MODELS

    assert "prior-f2" not in MODELS and COMPONENTS["prior-f2"].card.exists()
    path = Path(__file__).parents[1] / "src" / "unblur" / "configs" / "deblurdiff" / "small-f2.yaml"
    config = dict(load_config(path)["model"])
    assert config.pop("arch") == "deblurdiff-small" and config["prior"] == "prior-f2"
    model = DeblurDiffSmall(**config)
    assert not any(p.requires_grad for p in [*model.unet.parameters(), *model.vae.parameters()])
    vae = load_trained_vae("vae-f2")
    assert all(torch.equal(a, b) for a, b in zip(model.vae.state_dict().values(), vae.state_dict().values()))


TINY_SMALL = [f"model.{k}={v}" for k, v in TINY_METHODS["deblurdiff-small"].items()]


def test_deblurdiff_small_trains_on_a_trained_vae_and_deblurs_from_the_cli(sharp_folder, tmp_path):
    """Both stages through the engine; the VAE stays as trained, the rest learns; `unblur deblur` samples
    with --steps/--seed/--samples/--save-kernels, the same seed giving the same file."""
    from unblur.cli import main
    from unblur.io import read_image
    from unblur.modelfile import load_model_file
    from unblur.train.loop import train

    vae_cfg = engine_config(sharp_folder, 3, "loss.pixel=l1", "model.arch=small-vae", "model.widths=[8, 16]", "train.val_every=3")
    train(vae_cfg, tmp_path / "vae", quiet=True)
    vae_file = tmp_path / "vae" / "last.safetensors"
    cfg = engine_config(
        sharp_folder,
        4,
        "loss.pixel=l1",
        "model.arch=deblurdiff-small",
        f"model.vae={vae_file}",
        *TINY_SMALL,
        "optim.lr=1e-3",
        "train.val_every=4",
        "train.ema=0",
    )
    summary = train(cfg, tmp_path / "dd", quiet=True)
    assert all(math.isfinite(x) for x in summary["losses"]) and summary["best_val_psnr"] > 5
    model, meta = load_model_file(tmp_path / "dd" / "last.safetensors")
    assert meta["arch"] == "deblurdiff-small" and "vae" not in meta["config"]  # no path of this machine in the file
    vae, _ = load_model_file(vae_file)
    fresh = type(model)(**meta["config"])
    assert all(torch.equal(a, b) for a, b in zip(model.vae.state_dict().values(), vae.vae.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(model.unet.state_dict().values(), fresh.unet.state_dict().values()))

    photo = sharp_folder / min(p.name for p in sharp_folder.iterdir())
    args = ["deblur", str(photo), "--model", str(tmp_path / "dd" / "last.safetensors"), "--steps", "2", "--tile", "48", "-q"]
    assert main([*args, "-o", str(tmp_path / "a"), "--samples", "2", "--seed", "5", "--save-kernels"]) == 0
    assert main([*args, "-o", str(tmp_path / "b"), "--seed", "5"]) == 0
    a1, a2 = (read_image(tmp_path / "a" / f"{photo.stem}-{k}.png")[0] for k in (1, 2))
    b = read_image(tmp_path / "b" / f"{photo.stem}.png")[0]
    kernels = read_image(tmp_path / "a" / f"{photo.stem}-kernels.png")[0]
    assert a1.shape == b.shape == kernels.shape == read_image(photo)[0].shape
    assert np.array_equal(a1, b) and not np.array_equal(a1, a2)  # seed 5 twice; seeds 5 and 6 differ
    assert main([*args, "-o", str(tmp_path / "b"), "--seed", "5"]) == 1  # refuses to overwrite


def test_prior_stage_trains_then_steers_frozen_under_deblurdiff(sharp_folder, tmp_path):
    """The prior stage (``small-prior``) learns the sharp latents through the engine; DeblurDiff built on it
    (``model.prior``) gets its UNet and VAE, keeps them as trained, copies the prior's encoder into the
    ControlNet, rebuilds from its own file without the prior's, and refuses a prior of other sizes."""
    from unblur.methods.deblurdiff import DeblurDiffSmall
    from unblur.modelfile import load_model_file
    from unblur.train.loop import train

    tiny = {k: v for k, v in TINY_METHODS["small-prior"].items() if k != "strength"}
    prior_cfg = engine_config(
        sharp_folder, 12, "model.arch=small-prior", *(f"model.{k}={v}" for k, v in tiny.items()),
        "model.latent_scale=0.5", "optim.lr=3e-3", "train.val_every=12", "train.ema=0",
    )  # fmt: skip
    summary = train(prior_cfg, tmp_path / "prior", quiet=True)
    assert sum(summary["losses"][-3:]) < sum(summary["losses"][:3]) and summary["best_val_psnr"] > 5, summary
    prior_file = tmp_path / "prior" / "last.safetensors"
    prior, _ = load_model_file(prior_file)

    sizes = dict(latent_channels=4, vae_widths=[8, 16], unet_widths=[8, 16], cross_attention_dim=8, latent_scale=0.5)
    model = DeblurDiffSmall(**sizes, vae_mid_attention=False, kernel_size=3, lkpn_width=8, train_unet=False, prior=str(prior_file))
    assert model.scale == 0.5 and model.config["prior"] is None  # a path of this machine: not recorded, the file holds all
    assert not model.frozen_elsewhere and any(k.startswith("unet.") for k in model.state_dict())
    assert not any(p.requires_grad for p in [*model.unet.parameters(), *model.vae.parameters()])
    for ours, theirs in [(model.unet, prior.unet), (model.vae, prior.vae)]:
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    assert torch.equal(model.controlnet.conv_in.weight, prior.unet.conv_in.weight)
    rebuilt = DeblurDiffSmall(**model.config)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 16, 16)
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    assert torch.equal(rebuilt.sample(x, 2, gen()), model.sample(x, 2, gen()))
    unclamped = DeblurDiffSmall(**{**model.config, "clip_sample": 0.0})
    unclamped.load_state_dict(model.state_dict())
    assert model.schedule.clip == 1.0 and unclamped.schedule.clip == 0.0  # clean estimates clamped to [-1, 1] or not
    with pytest.raises(ValueError, match="unet_widths"):
        DeblurDiffSmall(**{**sizes, "unet_widths": [8, 32]}, vae_mid_attention=False, prior=str(prior_file))
    with pytest.raises(ValueError, match="latent_scale"):
        DeblurDiffSmall(**{**sizes, "latent_scale": None}, vae_mid_attention=False, prior=str(prior_file))


def test_a_model_on_a_component_prior_files_only_its_trained_parts(sharp_folder, tmp_path, monkeypatch):
    """With the prior named as a registered component, the model file leaves the frozen UNet and VAE out and records
    the component and a digest of its weights: it rebuilds from the component to the same samples, refuses a
    component whose weights changed since, and an earlier stage's whole file can still start it (``train.init``)."""
    import unblur.zoo
    from unblur.methods.deblurdiff import DeblurDiffSmall
    from unblur.modelfile import load_model_file, save_model_file
    from unblur.train.loop import train
    from unblur.zoo import ModelEntry

    tiny = {k: v for k, v in TINY_METHODS["small-prior"].items() if k != "strength"}
    prior_cfg = engine_config(
        sharp_folder, 2, "model.arch=small-prior", *(f"model.{k}={v}" for k, v in tiny.items()), "model.latent_scale=0.5"
    )
    train(prior_cfg, tmp_path / "prior", quiet=True)
    prior_file = tmp_path / "prior" / "last.safetensors"
    entry = ModelEntry("tiny-prior", str(prior_file), "a tiny prior", "tests")
    monkeypatch.setitem(unblur.zoo.COMPONENTS, "tiny-prior", entry)
    sizes = dict(latent_channels=4, vae_widths=[8, 16], unet_widths=[8, 16], cross_attention_dim=8, latent_scale=0.5)
    args = dict(**sizes, vae_mid_attention=False, kernel_size=3, lkpn_width=8, train_unet=False)

    torch.manual_seed(0)
    model = DeblurDiffSmall(**args, prior="tiny-prior")
    assert model.frozen_elsewhere and model.config["prior"] == "tiny-prior" and len(model.config["prior_digest"]) == 16
    with torch.no_grad():
        model.lkpn.ending[-1].bias.normal_(0, 0.05)  # trained parts that differ from a fresh model's
    assert not any(k.startswith(("unet.", "vae.")) for k in model.state_dict()) and "lkpn.ending.2.bias" in model.state_dict()
    path = save_model_file(tmp_path / "slim.safetensors", model, "deblurdiff-small")
    whole = DeblurDiffSmall(**args, prior=str(prior_file))  # the same model, its file holding every weight
    whole.load_state_dict(model.state_dict(), strict=False)
    whole_path = save_model_file(tmp_path / "whole.safetensors", whole, "deblurdiff-small")
    assert path.stat().st_size < 0.7 * whole_path.stat().st_size
    loaded, _ = load_model_file(path)
    x = torch.rand(1, 3, 16, 16)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(loaded.sample(x, 2, gen()), model.sample(x, 2, gen()))
    # an earlier stage's whole file starts the slim model; one trained on other frozen weights does not
    fresh = DeblurDiffSmall(**args, prior="tiny-prior")
    fresh.init_from(load_model_file(whole_path)[0], "deblurdiff-small")
    assert torch.equal(fresh.lkpn.ending[-1].bias, model.lkpn.ending[-1].bias)
    other = DeblurDiffSmall(**sizes, vae_mid_attention=False, kernel_size=3, lkpn_width=8, train_unet=False)
    with pytest.raises(ValueError, match="another UNet and VAE"):
        fresh.init_from(other, "deblurdiff-small")
    # the component's weights change (a later link of the prior): the slim file is refused in one line
    changed, meta = load_model_file(prior_file)
    with torch.no_grad():
        next(changed.unet.parameters()).add_(0.01)
    save_model_file(prior_file, changed, meta["arch"])
    with pytest.raises(ValueError, match="another version of component 'tiny-prior'"):
        load_model_file(path)


def test_lkpn_stage_can_measure_z_s_as_the_image_it_decodes_to():
    """``zs_loss: image``: the z_s term is the engine's image loss of decode(z_s) (through the frozen decoder) against
    the sharp crop; gradients still reach the LKPN alone, and the loss falls. Without an image loss it is refused."""
    from unblur.losses import ImageLoss
    from unblur.methods.deblurdiff import DeblurDiffSmall
    from unblur.train.config import DEFAULTS

    sizes = {**TINY_METHODS["deblurdiff-small"], "lkpn_levels": 1}
    torch.manual_seed(0)
    net = DeblurDiffSmall(**sizes, diffusion_weight=0.0, zs_loss="image").train()
    image_loss = ImageLoss({**DEFAULTS["loss"], "pixel": "l1"}, torch.device("cpu"))
    blurred, sharp = batch()
    noise = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.no_grad():
        z_blur, z_sharp = net.condition(blurred), net.encode(sharp)
        z_t, _, t = net.noisy(z_sharp, generator=noise())
        decoded = net.decode(net.z_s(z_blur, z_t, t), clamp=False)
        expected = (decoded - sharp).abs().mean()
        assert torch.allclose(net.loss(blurred, sharp, generator=noise(), image_loss=image_loss), expected, atol=1e-6)
    losses = adam_steps(net, lambda: net.loss(blurred, sharp, generator=noise(), image_loss=image_loss), 15)
    assert losses[-1] < 0.9 * losses[0], losses
    assert parts_with_gradients(net) == {"lkpn"}
    with pytest.raises(ValueError, match="needs the image loss"):
        net.loss(blurred, sharp)
    with pytest.raises(ValueError, match="zs_loss must be one of"):
        DeblurDiffSmall(**sizes, zs_loss="pixels")


def test_growing_the_eac_kernels_keeps_every_sample(tmp_path):
    """scripts/grow_lkpn_kernel.py: the LKPN's k x k kernels become the centres of larger ones, zero around them, so
    z_s and the samples are unchanged and the new model's file says the new kernel size; a -0 weight digests as +0."""
    import subprocess
    import sys

    from unblur.methods.deblurdiff import DeblurDiffSmall
    from unblur.modelfile import load_model_file, save_model_file, weights_digest

    torch.manual_seed(0)
    model = DeblurDiffSmall(**{**TINY_METHODS["deblurdiff-small"], "kernel_size": 3})
    with torch.no_grad():
        model.lkpn.ending[-1].weight.normal_(0, 0.02)
        model.lkpn.ending[-1].bias.normal_(0, 0.02)
    save_model_file(tmp_path / "k3.safetensors", model, "deblurdiff-small")
    script = Path(__file__).parents[1] / "scripts" / "grow_lkpn_kernel.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "k3.safetensors"), str(tmp_path / "k7.safetensors"),
                        "--kernel", "7"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    grown, meta = load_model_file(tmp_path / "k7.safetensors")
    assert meta["config"]["kernel_size"] == 7 and grown.lkpn.ending[-1].out_channels == model.unet.config.in_channels * 49
    x = torch.rand(1, 3, 32, 32)
    gen = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    assert torch.allclose(grown.sample(x, 2, gen(), strength=0.5), model.sample(x, 2, gen(), strength=0.5), atol=1e-6)
    plus, minus = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        plus.weight.fill_(0.0), minus.weight.fill_(-0.0), plus.bias.fill_(1.0), minus.bias.fill_(1.0)
    assert weights_digest(plus) == weights_digest(minus)


def test_steps_and_samples_are_refused_for_a_regression_model(tmp_path, photo, capsys):
    from unblur.cli import main

    assert main(["deblur", str(photo), "-o", str(tmp_path / "o"), "--samples", "2"]) == 2
    assert "diffusion models" in capsys.readouterr().err


def test_kernel_map_shows_strength_and_orientation():
    from unblur.methods.deblurdiff import kernel_map

    k, h, w = 5, 4, 6
    taps = torch.zeros(1, 2, k, k, h, w)  # two latent channels, the same kernels
    taps[:, :, k // 2, :, :, :3] = 0.2  # left half: a horizontal line
    taps[:, :, :, k // 2, :, 3:] = 0.1  # right half: a vertical line, half as strong
    picture = kernel_map(taps.reshape(1, 2 * k * k, h, w), k)
    assert picture.shape == (h, w, 3)
    left, right = picture[0, 0], picture[0, -1]
    assert left[0] > 0.9 and left[1] < 0.1 and left[2] < 0.1  # horizontal: red, full strength
    assert right[0] < 0.1 and 0.4 < right[1] < 0.6 and 0.4 < right[2] < 0.6  # vertical: cyan, half as bright


def test_sd_based_model_files_hold_only_the_trained_parts_and_load_with_sd(tiny_sd, tmp_path, photo, capsys):
    """arch deblurdiff: ControlNet + LKPN in the file, the frozen UNet/VAE read from --sd (moved folders work)."""
    import shutil

    from unblur.cli import main
    from unblur.methods.deblurdiff import DeblurDiffSD
    from unblur.modelfile import load_model_file, save_model_file

    torch.manual_seed(0)
    net = DeblurDiffSD(str(tiny_sd[0]), kernel_size=3, lkpn_width=8, val_steps=2)
    with torch.no_grad():
        next(net.lkpn.parameters()).add_(0.5)  # as if trained: differs from a fresh LKPN
    path = save_model_file(tmp_path / "dd.safetensors", net, "deblurdiff")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith(("unet.", "vae.")) for k in keys) and any(k.startswith("controlnet.") for k in keys)
    moved = tmp_path / "sd-elsewhere"
    shutil.copytree(tiny_sd[0], moved)
    loaded, _ = load_model_file(path, sd=str(moved))
    assert all(torch.equal(a, b) for a, b in zip(loaded.lkpn.state_dict().values(), net.lkpn.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(loaded.unet.state_dict().values(), tiny_sd[1].state_dict().values()))

    out = tmp_path / "out"
    assert main(["deblur", str(photo), "-o", str(out), "--model", str(path), "--sd", str(moved), "--steps", "1", "-q"]) == 0
    assert (out / f"{photo.stem}.png").exists()
    assert main(["deblur", str(photo), "-o", str(out), "--model", str(path), "--sd", str(tmp_path / "nothing"), "-q"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["deblur", str(photo), "-o", str(tmp_path / "o2"), "--sd", str(moved), "-q"]) == 2  # the default is no SD model
    assert "--sd is for models built on a Stable Diffusion folder" in capsys.readouterr().err


def adam_steps(net, loss_fn, steps: int, lr: float = 3e-3) -> list[float]:
    """``steps`` Adam steps on ``loss_fn()`` over the trainable parameters; returns the losses."""
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def parts_with_gradients(net) -> set[str]:
    """The top-level parts of ``net`` whose parameters got a non-zero gradient."""
    return {n.split(".")[0] for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_lkpn_stage_trains_the_lkpn_alone_on_the_latent_loss():
    """``diffusion_weight`` 0 (our LKPN stage): the loss is the latent loss of z_s alone, only the LKPN gets
    gradients (the ControlNet and UNet never run), and it falls; weights that would train nothing are refused."""
    from unblur.methods.deblurdiff import DeblurDiffSmall

    sizes = {**TINY_METHODS["deblurdiff-small"], "lkpn_levels": 1}
    torch.manual_seed(0)
    net = DeblurDiffSmall(**sizes, diffusion_weight=0.0).train()
    assert len(net.lkpn.downs) == 1
    blurred, sharp = batch()
    noise = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    z_blur, z_sharp = net.condition(blurred), net.encode(sharp)
    z_t, _, t = net.noisy(z_sharp, generator=noise())
    with torch.no_grad():
        _, z_s = net.denoise(z_t, t, z_blur)
        assert torch.allclose(net.loss(blurred, sharp, generator=noise()), F.mse_loss(z_s, z_sharp))
    losses = adam_steps(net, lambda: net.loss(blurred, sharp, generator=noise()), 20)
    assert losses[-1] < 0.8 * losses[0], losses
    assert parts_with_gradients(net) == {"lkpn"}
    with pytest.raises(ValueError, match="not both 0"):
        DeblurDiffSmall(**sizes, diffusion_weight=0.0, latent_weight=0.0)


def test_lkpn_stage_at_the_anchor_timesteps_draws_only_late_t():
    """``latent_t_min`` (the LKPN stage only): the latent loss is the one at timesteps drawn in [t_min, T), the same
    draw as ``noisy(..., t_min)``; a joint stage, whose diffusion loss needs every t, refuses it, as does a t_min
    beyond the schedule."""
    from unblur.methods.deblurdiff import DeblurDiffSmall

    sizes = {**TINY_METHODS["deblurdiff-small"], "lkpn_levels": 1}
    torch.manual_seed(0)
    net = DeblurDiffSmall(**sizes, diffusion_weight=0.0, latent_t_min=800).train()
    blurred, sharp = batch()
    z_blur, z_sharp = net.condition(blurred), net.encode(sharp)
    _, _, t = net.noisy(z_sharp.repeat(64, 1, 1, 1), generator=torch.Generator().manual_seed(1), t_min=800)
    assert t.min() >= 800 and t.max() < 1000 and len(set(t.tolist())) > 10
    with torch.no_grad():  # give the LKPN kernels that depend on t, so the two draws below can differ
        net.lkpn.ending[-1].bias.normal_(0, 0.05)
        z_t, _, t = net.noisy(z_sharp, generator=torch.Generator().manual_seed(2), t_min=800)
        expected = F.mse_loss(net.z_s(z_blur, z_t, t), z_sharp)
        assert torch.allclose(net.loss(blurred, sharp, generator=torch.Generator().manual_seed(2)), expected)
        z_t, _, t = net.noisy(z_sharp, generator=torch.Generator().manual_seed(2))
        assert t.max() < 800  # this seed's plain draw lies below t_min: the loss above was not that one
    with pytest.raises(ValueError, match="LKPN stage"):
        DeblurDiffSmall(**sizes, latent_t_min=800)
    with pytest.raises(ValueError, match="latent_t_min must be in"):
        DeblurDiffSmall(**sizes, diffusion_weight=0.0, latent_t_min=1000)

"""DeblurDiff on a tiny random SD-shaped model: frozen parts stay frozen, the loss falls, sampling is seeded."""

import pytest
import torch

pytest.importorskip("diffusers")

from unblur.methods.deblurdiff import DeblurDiff, adain_colour_fix
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
    """The small VAE learns to reconstruct sharp crops with `unblur train`'s engine (method protocol)."""
    from unblur.train.config import load_config
    from unblur.train.loop import train

    cfg = load_config(
        None,
        [
            "model.arch=small-vae",
            "model.widths=[8, 16]",
            f"data.train={sharp_folder}",
            f"data.val={sharp_folder}",
            "data.crop=32",
            "data.batch=4",
            "data.workers=0",
            "data.val_crop=32",
            "data.val_images=4",
            "optim.steps=30",
            "optim.warmup=2",
            "optim.lr=3e-3",
            "loss.pixel=l1",
            "train.device=cpu",
            "train.val_every=15",
            "train.ckpt_every=30",
            "train.tensorboard=false",
        ],
    )
    summary = train(cfg, tmp_path / "vae", quiet=True)
    assert sum(summary["losses"][-5:]) < 0.7 * sum(summary["losses"][:5]), summary["losses"]
    from unblur.train.checkpoint import load_model_file

    vae, meta = load_model_file(tmp_path / "vae" / "last.safetensors")
    assert meta["arch"] == "small-vae" and meta["step"] == 30
    from unblur.methods.small_sd import build_small_sd

    sd = build_small_sd(unet_widths=[16, 32], cross_attention_dim=16, attention_head_dim=4, vae=vae.vae)
    assert sd.vae is vae.vae

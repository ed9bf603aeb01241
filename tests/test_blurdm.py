"""BlurDM: the dual diffusion's closed form and exact reverse, the stages, the one-command training."""

import pytest
import torch

from unblur.diffusion.blur_diffusion import BlurSchedule, sample
from unblur.methods.blurdm import BlurDM

TINY = {
    "backbone": "nafnet",
    "backbone_config": {"width": 8, "enc_blocks": [1, 1], "middle_blocks": 1, "dec_blocks": [1, 1]},
    "encoder_channels": 8,
    "encoder_blocks": 1,
    "dim": 16,
    "estimator_hidden": 32,
}


def test_schedule_matches_the_authors_numbers():
    s = BlurSchedule()
    assert torch.allclose(s.alphas, torch.tensor([1.0, 1.2, 1.4, 1.6, 1.8, 2.0], dtype=torch.float64))
    assert torch.allclose(s.betas[1:], torch.tensor([0.0, 0.005, 0.01, 0.015, 0.02], dtype=torch.float64))
    # bbeta_T^2 = sum_i (alpha_{i-1} / alpha_T)^2 beta_i, by hand
    by_hand = sum((a / 2.0) ** 2 * b for a, b in zip([1.0, 1.2, 1.4, 1.6, 1.8], [0.0, 0.005, 0.01, 0.015, 0.02]))
    assert s.bar_betas[-1].item() == pytest.approx(by_hand**0.5, rel=1e-12) and s.bar_betas[0] == 0


def test_closed_form_forward_equals_the_simulated_chain():
    """Simulate z_t step by step with fresh noise; z_t's mean and spread match the closed form."""
    s = BlurSchedule()
    gen = torch.Generator().manual_seed(0)
    n, d = 20000, 4
    z0 = torch.randn(1, d, generator=gen, dtype=torch.float64).expand(n, d)
    residuals = [torch.randn(1, d, generator=gen, dtype=torch.float64) * 0.3 for _ in range(s.steps)]
    z = z0
    for t in range(1, s.steps + 1):
        z = s.forward_step(z, t, residuals[t - 1], torch.randn(n, d, generator=gen, dtype=torch.float64))
    total = sum(residuals)
    expected_mean = s.marginal(z0[:1], total, s.steps, torch.zeros(1, d, dtype=torch.float64))
    assert torch.allclose(z.mean(0, keepdim=True), expected_mean, atol=4 * s.bar_betas[-1].item() / n**0.5)
    assert z.std(0).mean().item() == pytest.approx(s.bar_betas[-1].item(), rel=0.02)
    # z_T's mean is the blurred latent when the residuals add up to alpha_T * z_blur - z_0
    z_blur = torch.randn(1, d, dtype=torch.float64)
    eps = torch.randn(1, d, dtype=torch.float64)
    zt = s.marginal(z0[:1], s.alphas[-1] * z_blur - z0[:1], s.steps, eps)
    assert torch.allclose(zt, z_blur + s.bar_betas[-1] * eps)


def test_reverse_chain_with_perfect_estimators_returns_the_sharp_latent():
    s = BlurSchedule()
    gen = torch.Generator().manual_seed(1)
    z0, eps = torch.randn(3, 8, generator=gen, dtype=torch.float64), torch.randn(3, 8, generator=gen, dtype=torch.float64)
    z_blur = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    # residuals: the extra exposure split evenly over the steps (any split works)
    e_total = s.alphas[-1] * z_blur - z0
    share = (s.alphas[1:] - s.alphas[:-1]) / (s.alphas[-1] - 1)
    residual = {t: share[t - 1] * e_total for t in range(1, s.steps + 1)}

    def residual_net(zb, level, z_t):
        return residual[round(level[0, 0].item() * s.steps)]

    def noise_net(zb, level, z_t):
        return eps

    out = sample(s, residual_net, noise_net, z_blur, noise=eps)
    assert torch.allclose(out, z0, atol=1e-12)
    wrong = sample(s, residual_net, lambda *a: torch.zeros_like(eps), z_blur, noise=eps)
    assert not torch.allclose(wrong, z0, atol=1e-3)  # the noise estimate matters


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_trains_only_its_parts_and_reduces_its_loss(stage):
    from unblur.train.config import DEFAULTS
    from unblur.train.losses import ImageLoss

    torch.manual_seed(0)
    model = BlurDM(**TINY, stage=stage).train()
    image_loss = ImageLoss(DEFAULTS["loss"], "cpu")
    sharp = torch.rand(4, 3, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, 1, 2, count_include_pad=False)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(15):
        torch.manual_seed(0)  # the same z_T noise each step: a fixed batch, a fixed problem
        loss = model(blurred, sharp, image_loss=image_loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert frozen and all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    if stage == 2:
        assert all(n.startswith(("backbone.", "sharp_encoder.")) for n in frozen) and any(
            n.startswith("sharp_encoder.") for n in frozen
        )
        se_bn = [m for m in model.sharp_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert se_bn and not any(m.training for m in se_bn)  # frozen SE keeps its BatchNorm statistics too


def test_inference_is_deterministic_and_needs_no_sharp_image():
    model = BlurDM(**TINY, stage=3).eval()
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == x.shape and torch.equal(a, b)
    with pytest.raises(ValueError, match="sharp"):
        BlurDM(**TINY, stage=1).eval()(x)


def test_three_stages_run_as_one_resumable_command(sharp_folder, tmp_path):
    import subprocess
    import sys

    from safetensors.torch import load_file

    from unblur.train.checkpoint import read_model_meta

    config = tmp_path / "blurdm.yaml"
    config.write_text(
        f"""
model: {{arch: blurdm, backbone: nafnet, encoder_channels: 8, encoder_blocks: 1, dim: 16, estimator_hidden: 32,
        backbone_config: {{width: 8, enc_blocks: [1, 1], middle_blocks: 1, dec_blocks: [1, 1]}}}}
data: {{train: {sharp_folder}, val: {sharp_folder}, crop: 32, batch: 2, workers: 0, val_crop: 32, val_images: 2}}
optim: {{warmup: 1}}
train: {{device: cpu, ckpt_every: 2, val_every: 2, tensorboard: false}}
stages:
  - {{model: {{stage: 1}}, optim: {{steps: 3, lr: 1.0e-3}}}}
  - {{model: {{stage: 2}}, optim: {{steps: 3, lr: 1.0e-3}}}}
  - {{model: {{stage: 3}}, optim: {{steps: 2, lr: 1.0e-4}}}}
"""
    )
    cmd = [sys.executable, "-m", "unblur", "train", str(config), "--out", str(tmp_path / "run"), "-q", "--resume", "auto"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    run = tmp_path / "run"
    assert [read_model_meta(run / f"stage-{k}" / "last.safetensors")["config"]["stage"] for k in (1, 2, 3)] == [1, 2, 3]
    s1, s2 = load_file(str(run / "stage-1" / "last.safetensors")), load_file(str(run / "stage-2" / "last.safetensors"))
    se = [k for k in s1 if k.startswith("sharp_encoder.")]
    assert se and all(torch.equal(s1[k], s2[k]) for k in se)  # stage 2 leaves SE unchanged
    assert any(not torch.equal(s1[k], s2[k]) for k in s1 if k.startswith("blur_encoder."))
    # the final model restores photos with no sharp image
    from unblur.restore import Restorer

    out = Restorer(run / "last.safetensors", device="cpu").restore(torch.rand(40, 30, 3).numpy())
    assert out.shape == (40, 30, 3)
    # everything done: a second call finds every stage finished and trains nothing
    logs = [(run / f"stage-{k}" / "log.csv").read_text() for k in (1, 2, 3)]
    stamps = [(run / f"stage-{k}" / "last.safetensors").stat().st_mtime_ns for k in (1, 2, 3)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert logs == [(run / f"stage-{k}" / "log.csv").read_text() for k in (1, 2, 3)]
    assert stamps == [(run / f"stage-{k}" / "last.safetensors").stat().st_mtime_ns for k in (1, 2, 3)]


def test_whole_image_prior_is_computed_tile_by_tile():
    model = BlurDM(**TINY, stage=3).eval()
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        assert torch.allclose(model.image_prior(x, tile=512), model.diffused_prior(x), atol=1e-6)
        # tiles of 32x32 and 32x16, averaged by area (the global pool of the whole, up to tile borders)
        pooled = model.blur_encoder.pooled
        big = pooled(x[..., :32, :32]) + pooled(x[..., 32:, :32])
        small = pooled(x[..., :32, 32:]) + pooled(x[..., 32:, 32:])
        expected = model.blur_encoder.mlp((big * 1024 + small * 512) / (64 * 48))
        z = model.image_prior(x, tile=32)
    from unblur.diffusion.blur_diffusion import sample

    assert torch.allclose(z, sample(model.schedule, model.residual_net, model.noise_net, expected), atol=1e-6)


def test_stage_with_random_noise_resumes_exactly(sharp_folder, tmp_path):
    """Stage 3 draws z_T noise every step: a resumed run must draw the same (the RNG state is checkpointed)."""
    from unblur.train.config import load_config
    from unblur.train.loop import train

    sets = [
        "model.arch=blurdm",
        *[f"model.{k}={v}" for k, v in TINY.items() if k != "backbone_config"],
        "model.backbone_config={width: 8, enc_blocks: [1, 1], middle_blocks: 1, dec_blocks: [1, 1]}",
        "model.stage=3",
        f"data.train={sharp_folder}",
        "data.val=",
        "data.crop=32",
        "data.batch=2",
        "data.workers=0",
        "optim.steps=6",
        "optim.warmup=1",
        "train.device=cpu",
        "train.ckpt_every=3",
        "train.tensorboard=false",
    ]
    straight = train(load_config(None, sets), tmp_path / "a", quiet=True)
    train(load_config(None, sets), tmp_path / "b", quiet=True, stop_at=3)
    resumed = train(load_config(None, sets), tmp_path / "b", resume="auto", quiet=True)
    assert resumed["losses"] == straight["losses"][3:]


@pytest.mark.parametrize("backbone", sorted(__import__("unblur.nn", fromlist=["BACKBONES"]).BACKBONES))
def test_blurdm_plugs_into_every_backbone(backbone):
    """Each backbone's tiny config takes BlurDM's prior; stage 3 trains end to end through it."""
    from unblur import nn as backbones
    from unblur.train.config import DEFAULTS
    from unblur.train.losses import ImageLoss

    torch.manual_seed(0)
    config = {**TINY, "backbone": backbone, "backbone_config": backbones.backbone_module(backbone).TINY}
    model = BlurDM(**config, stage=3).train()
    x = torch.rand(2, 3, 32, 32)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):  # the zero-initialised modulation passes no gradient to the prior until its first update
        opt.zero_grad()
        model(x, x.flip(1), image_loss=ImageLoss(DEFAULTS["loss"], "cpu")).backward()
        opt.step()
    # then the gradient reaches the blur encoder through the backbone's prior modulation
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.blur_encoder.parameters())
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 21, 19)).shape == (1, 3, 21, 19)


def test_bundled_blurdm_model_restores_a_photo_per_tile_and_per_image(tmp_path):
    import subprocess
    import sys

    import numpy as np
    from conftest import textured
    from PIL import Image

    from unblur.restore import Restorer

    rgb = textured(80, 120).astype(np.float32) / 255
    per_tile = Restorer("nafnet-blurdm", device="cpu", tile=64, overlap=16).restore(rgb)
    per_image = Restorer("nafnet-blurdm", device="cpu", tile=64, overlap=16, prior="image").restore(rgb)
    assert per_tile.shape == per_image.shape == rgb.shape and np.abs(per_tile - per_image).max() < 0.05
    Image.fromarray(textured(40, 50)).save(tmp_path / "in.png")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "unblur",
            "deblur",
            str(tmp_path / "in.png"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            "nafnet-blurdm",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "out" / "in.png").size == (50, 40)

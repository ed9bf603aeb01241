"""BlurDM: the dual diffusion's closed form and exact reverse, the stages, the one-command training."""

import pytest
import torch
from conftest import TINY_METHODS, engine_config

from unblur.diffusion.blur_diffusion import BlurSchedule, sample
from unblur.methods.blurdm import BlurDM

TINY = TINY_METHODS["blurdm"]


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
    from unblur.losses import ImageLoss

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
        loss, _ = model.training_loss({"blurred": blurred, "sharp": sharp}, image_loss)
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

    from unblur.modelfile import read_model_meta

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
    from unblur.train.loop import train

    sets = [
        "model.arch=blurdm",
        *[f"model.{k}={v}" for k, v in TINY.items() if k != "backbone_config"],
        "model.backbone_config={width: 8, enc_blocks: [1, 1], middle_blocks: 1, dec_blocks: [1, 1]}",
        "model.stage=3",
        "data.val=",
        "data.batch=2",
        "optim.warmup=1",
        "train.ckpt_every=3",
    ]
    straight = train(engine_config(sharp_folder, 6, *sets), tmp_path / "a", quiet=True)
    train(engine_config(sharp_folder, 6, *sets), tmp_path / "b", quiet=True, stop_at=3)
    resumed = train(engine_config(sharp_folder, 6, *sets), tmp_path / "b", resume="auto", quiet=True)
    assert resumed["losses"] == straight["losses"][3:]


@pytest.mark.parametrize("layout", ["first version", "authors"])
@pytest.mark.parametrize("backbone", sorted(__import__("unblur.nn", fromlist=["BACKBONES"]).BACKBONES))
def test_blurdm_plugs_into_every_backbone(backbone, layout):
    """Each backbone's tiny config takes BlurDM's prior; stage 3 trains end to end through it."""
    from unblur import nn as backbones
    from unblur.train.config import DEFAULTS
    from unblur.losses import ImageLoss

    torch.manual_seed(0)
    config = {**TINY, "backbone": backbone, "backbone_config": backbones.backbone_module(backbone).TINY}
    if layout == "authors":
        config.update(prior_at="input", prior_init="random", prior_net="authors")
    model = BlurDM(**config, stage=3).train()
    x = torch.rand(2, 3, 32, 32)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):  # the zero-initialised modulation passes no gradient to the prior until its first update
        opt.zero_grad()
        model.training_loss({"blurred": x, "sharp": x.flip(1)}, ImageLoss(DEFAULTS["loss"], "cpu"))[0].backward()
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


# -- our option: physical partial exposures supervise every reverse step (exposure_weight) --------------


def test_reverse_chain_reports_each_steps_noise_free_mean():
    """With exact estimates, the estimate z_{t-1} - bbeta_{t-1} eps_hat is the forward process's mean."""
    s = BlurSchedule()
    gen = torch.Generator().manual_seed(2)
    z0, eps, z_blur = (torch.randn(3, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    residual = [(s.alphas[t] - s.alphas[t - 1]) / (s.alphas[-1] - 1) * (s.alphas[-1] * z_blur - z0) for t in range(6)]
    means = []
    sample(s, lambda zb, lv, z: residual[round(lv[0, 0].item() * 5)], lambda *a: eps, z_blur, eps, means=means)
    zero = torch.zeros_like(eps)
    expected = [s.marginal(z0, sum(residual[1 : t + 1], zero), t, zero) for t in range(s.steps - 1, -1, -1)]
    assert len(means) == s.steps and all(torch.allclose(m, e, atol=1e-12) for m, e in zip(means, expected))


def test_partial_kernels_sum_to_one_and_grow_from_the_identity_to_the_whole_kernel():
    import numpy as np

    from unblur.blur.kernels import embed, motion_path, partial_kernels, path_kernel

    for seed in range(5):
        size = [9, 15, 25][seed % 3]
        path = motion_path(size, np.random.default_rng(seed))
        parts = partial_kernels(path, 25, [0.0, 0.2, 0.6, 1.0])
        assert parts.shape == (4, 25, 25) and parts.dtype == np.float32
        assert np.allclose(parts.sum(axis=(1, 2)), 1, atol=1e-6)
        assert parts[0, 12, 12] == 1  # f = 0: one point on the central pixel, the identity
        assert np.allclose(parts[-1], embed(path_kernel(path, size), 25), atol=1e-6)  # f = 1: the kernel itself
        # every partial kernel is centred like the whole one: the partial exposure does not shift the image
        grid = np.arange(25)
        for k in parts:
            assert np.allclose([(k.sum(0) * grid).sum(), (k.sum(1) * grid).sum()], 12, atol=1e-4)


def test_partial_exposures_run_from_the_sharp_to_the_noise_free_blurred_image():
    import numpy as np

    from unblur.blur.synth import UniformKernelBlur

    spec = UniformKernelBlur(max_noise=0.0, quantise_bits=None)  # the camera's noise and 8 bits off
    rngs = [np.random.default_rng([3, i]) for i in range(3)]
    draws = [spec.sample(rng) for rng in rngs]
    sharp = torch.rand(3, 3, 40, 40)
    blurred = spec.render(sharp, torch.from_numpy(np.stack([d["kernel"] for d in draws])), torch.zeros(3), padding="valid")
    parts = spec.partial_exposures(sharp, [d["path"] for d in draws], [0.0, 0.5, 1.0], padding="valid")
    assert parts.shape == (3, 3, 3, 16, 16) and 0 <= parts.min() and parts.max() <= 1
    assert torch.allclose(parts[:, 0], sharp[..., 12:-12, 12:-12], atol=1e-5)  # alpha -> 0: the sharp image
    assert torch.allclose(parts[:, -1], blurred, atol=1e-5)  # alpha = 1: the blurred image


def test_synthetic_pairs_are_the_same_with_and_without_partial_exposures(sharp_folder):
    from unblur.data.synthetic import SyntheticPairs, load_folder

    images = load_folder(sharp_folder)
    plain = SyntheticPairs(images, crop=32, batch=3, seed=4)
    with_parts = SyntheticPairs(images, crop=32, batch=3, seed=4, exposure_fractions=(0.25, 0.5, 0.75))
    for step in (0, 5):
        blurred, sharp = plain[step]
        item = with_parts[step]
        assert torch.equal(item["blurred"], blurred) and torch.equal(item["sharp"], sharp)
        assert item["exposures"].shape == (3, 3, 3, 32, 32)
    # the partial exposures lie between the sharp and the blurred crops: closer to the sharp one early on
    gap = [(item["exposures"][:, i] - item["sharp"]).abs().mean() for i in range(3)]
    assert 0 < gap[0] < gap[2] < (item["blurred"] - item["sharp"]).abs().mean() + 0.01
    with pytest.raises(ValueError, match="uniform-kernel"):
        SyntheticPairs(images, preset="camera-shake", exposure_fractions=(0.5,))


@pytest.mark.parametrize("stage", [2, 3])
def test_exposure_option_off_keeps_the_authors_loss_exactly(stage):
    from unblur.train.config import DEFAULTS
    from unblur.losses import ImageLoss, charbonnier

    image_loss = ImageLoss(DEFAULTS["loss"], "cpu")
    torch.manual_seed(0)
    model = BlurDM(**TINY, stage=stage).train()
    sharp = torch.rand(2, 3, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, 1, 2, count_include_pad=False)
    assert model.exposure_fractions is None and model.config["exposure_weight"] == 0
    torch.manual_seed(1)
    loss, _ = model.training_loss({"blurred": blurred, "sharp": sharp}, image_loss)
    torch.manual_seed(1)  # the authors' loss, written out: the same z_T noise
    prior = model.diffused_prior(blurred, torch.randn(2, TINY["dim"]))
    if stage == 2:
        expected = charbonnier(prior, model.sharp_encoder(blurred, sharp))
    else:
        expected = image_loss(model.backbone(blurred, prior), sharp)
    assert torch.equal(loss, expected)
    # the option on adds exactly its weighted term to that loss
    model.config["exposure_weight"] = 0.5
    exposures = torch.rand(2, 4, 3, 32, 32)
    torch.manual_seed(1)
    with_option, _ = model.training_loss({"blurred": blurred, "sharp": sharp, "exposures": exposures}, image_loss)
    torch.manual_seed(1)
    means = []
    model.diffused_prior(blurred, torch.randn(2, TINY["dim"]), means)
    assert torch.allclose(with_option, expected + 0.5 * model.exposure_loss(blurred, means, exposures), atol=1e-6)
    with pytest.raises(ValueError, match="partial exposures"):
        model.training_loss({"blurred": blurred, "sharp": sharp}, image_loss)  # on, but the data did not come with them


def test_stage_2_with_the_exposure_option_trains_on_synthetic_partial_exposures(sharp_folder):
    """Stage 2 as the engine runs it, on the data the option asks for: the loss falls, SE stays frozen."""
    from unblur.data.synthetic import SyntheticPairs, load_folder
    from unblur.train.config import DEFAULTS
    from unblur.losses import ImageLoss

    torch.manual_seed(0)
    model = BlurDM(**TINY, stage=2, exposure_weight=1.0).train()
    assert model.exposure_fractions == (0.2, 0.4, 0.6, 0.8)  # f_t = (alpha_t - 1) / (alpha_T - 1), t = 1 .. 4
    data = SyntheticPairs(load_folder(sharp_folder), crop=32, batch=4, seed=0, exposure_fractions=model.exposure_fractions)
    batch = data[0]
    se = {n: p.clone() for n, p in model.sharp_encoder.named_parameters()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    image_loss, losses = ImageLoss(DEFAULTS["loss"], "cpu"), []
    for _ in range(15):
        torch.manual_seed(0)  # the same z_T noise each step: a fixed batch, a fixed problem
        loss, _ = model.training_loss(batch, image_loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(torch.equal(p, se[n]) for n, p in model.sharp_encoder.named_parameters())


# -- BlurDM as the authors built it (docs/methods/blurdm.md cites their lines) ------------------------------

AUTHORS = {"prior_at": "input", "prior_init": "random", "prior_net": "authors"}


def _tiny_authors(backbone: str, **extra) -> BlurDM:
    from unblur import nn as backbones

    torch.manual_seed(0)
    config = {**TINY, "backbone": backbone, "backbone_config": backbones.backbone_module(backbone).TINY}
    return BlurDM(**{**config, **AUTHORS, **extra}, stage=3).eval()


def _attention_blocks(backbone: str, net) -> list:
    """The blocks of a transformer backbone that take the prior, each with the module its attention branch starts with."""
    if backbone == "stripformer":
        return [(b, b.norm1) for b in [*net.bottleneck, *net.decoder]]
    if backbone == "fftformer":
        return [(b, b.attn) for stack in [*net.decoders, net.refinement] for b in stack]
    return [(b, b.attn) for stack in net.decoders for b in stack]  # loformer


@pytest.mark.parametrize("backbone", ["stripformer", "fftformer", "loformer"])
def test_prior_enters_the_attention_branch_of_the_transformers(backbone):
    """Stripformer: x * k + v on the block's input, the residual taken before it; FFTformer: on FSAS's input
    after norm1; LoFormer: on the layer-normalised DCT coefficients that enter Freq-LC. Hooks record, for
    every modulated block, its input x, what the modulation received and gave, and what the attention got."""
    from unblur.nn.layers import PriorModulation
    from unblur.nn.loformer import dct2

    model = _tiny_authors(backbone)
    net, events, hooks = model.backbone, [], []
    blocks = _attention_blocks(backbone, net)
    for block, branch in blocks:
        hooks.append(block.register_forward_pre_hook(lambda m, args: events.append(("block", m, args[0]))))
        hooks.append(branch.register_forward_pre_hook(lambda m, args: events.append(("branch", m, args[0]))))
    for m in net.modules():
        if isinstance(m, PriorModulation):
            hook = m.register_forward_hook(lambda m, args, kwargs, out: events.append(("mod", args[0], out)), with_kwargs=True)
            hooks.append(hook)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
        for hook in hooks:
            hook.remove()
        assert [e[0] for e in events] == ["block", "mod", "branch"] * len(blocks)
        assert len(blocks) == sum(isinstance(m, PriorModulation) for m in net.modules())
        for (_, block, x_in), (_, mod_in, mod_out), (_, _, branch_in) in zip(*[iter(events)] * 3):
            if backbone == "stripformer":  # the block's input, before its norm (the residual keeps x_in)
                expected = x_in
            elif backbone == "fftformer":  # FSAS's input: the block's first LayerNorm of x
                expected = block.norm1(x_in)
            else:  # Freq-LC's input: the LayerNorm of x's DCT coefficients
                expected = block.norm1(dct2(x_in))
            assert torch.allclose(mod_in, expected, atol=1e-6)  # the modulated tensor
            assert branch_in is mod_out  # goes into the attention branch and nowhere else
    # the authors' Linear: no bias in Stripformer's and FFTformer's, a bias in LoFormer's
    assert all((m.linear.bias is not None) == (backbone == "loformer") for m in net.modules() if isinstance(m, PriorModulation))


@pytest.mark.parametrize("backbone", ["stripformer", "fftformer", "loformer"])
def test_with_the_attention_output_silenced_the_prior_cannot_reach_the_output(backbone):
    """The residual path carries no modulation: zero the attention branches' output projections and the
    prior no longer changes anything (our first version, which modulated every block's output, still would)."""
    x, z = torch.rand(1, 3, 32, 32), torch.randn(1, TINY["dim"])
    outputs = {}
    for prior_at in ("input", "output"):
        model = _tiny_authors(backbone, prior_at=prior_at)
        for block, _ in _attention_blocks(backbone, model.backbone):
            proj = block.proj_out if backbone == "stripformer" else block.attn.project_out
            for p in proj.parameters():
                p.data.zero_()
        with torch.no_grad():
            outputs[prior_at] = [model.restore(x, prior=s * z) for s in (1.0, -1.0)]
    assert torch.equal(*outputs["input"])
    assert not torch.allclose(*outputs["output"])


@pytest.mark.parametrize("backbone", ["nafnet", "mimo-unet-plus"])
def test_prior_modulates_the_input_of_each_decoder_level(backbone):
    """MIMO-UNet+ as the authors (DBlock.forward: x * k + v, then the residual blocks); NAFNet, not theirs, the same
    (our choice): one modulation per decoder level, whose output is the input of that level's stack of blocks."""
    from unblur.nn.layers import PriorModulation

    model = _tiny_authors(backbone)
    net, events = model.backbone, []
    for stack in net.decoders:  # NAFNet's decoder runs its blocks in turn, MIMO-UNet+'s calls the stack
        first = stack[0] if backbone == "nafnet" else stack
        first.register_forward_pre_hook(lambda m, args: events.append(("stack", args[0])))
    mods = [m for m in net.modules() if isinstance(m, PriorModulation)]
    for m in mods:
        m.register_forward_hook(lambda m, args, out: events.append(("mod", out)))
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
    assert len(mods) == len(net.decoders) and [e[0] for e in events] == ["mod", "stack"] * len(net.decoders)
    assert all(stack_in is mod_out for (_, mod_out), (_, stack_in) in zip(events[::2], events[1::2]))
    assert all(m.linear.bias is None and not m.identity for m in mods)  # the authors' bias-free, random Linear


def test_prior_network_has_the_papers_parameter_count():
    """BE + the two estimators at the paper's sizes: 2,067,776 parameters, the paper's 2.07 M (our first
    version: 1,645,376). The authors' BE is their encoder fed the blurred image twice (96 input channels);
    estimators Linear 513 -> 256 then five Linear 256 -> 256, every one followed by LeakyReLU."""
    sizes = {"encoder_channels": 64, "encoder_blocks": 6, "dim": 256, "estimator_hidden": 256}

    def count(model):
        return sum(p.numel() for part in (model.blur_encoder, model.residual_net, model.noise_net) for p in part.parameters())

    authors = BlurDM(**{**TINY, **sizes, **AUTHORS})
    assert count(authors) == 2_067_776 and round(count(authors) / 1e6, 2) == 2.07
    assert count(BlurDM(**{**TINY, **sizes})) == 1_645_376
    linears = [m for m in authors.noise_net.net if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(256, 513)] + [(256, 256)] * 5
    assert isinstance(authors.noise_net.net[-1], torch.nn.LeakyReLU)
    for encoder in (authors.blur_encoder, authors.sharp_encoder):
        assert encoder.body[0].in_channels == 96
        assert isinstance(encoder.mlp[-1], torch.nn.LeakyReLU)
        assert isinstance(encoder.body[-3], torch.nn.LeakyReLU)  # after the last conv, before the pool


def test_height_fft_loss_is_a_charbonnier_loss_on_column_spectra():
    """The authors' frequency loss: a 1-D DFT along the height of every column, real and imaginary parts
    under Charbonnier (eps 1e-3), written out here with an explicit DFT matrix."""
    import math

    from unblur.losses import charbonnier, fft_height_charbonnier

    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 12, 7, generator=gen), torch.rand(2, 3, 12, 7, generator=gen)
    n = torch.arange(12, dtype=torch.float64)
    angle = -2 * math.pi * n[:, None] * n[None, :] / 12
    dft_re, dft_im = torch.cos(angle), torch.sin(angle)
    d = (pred - target).double()
    re, im = dft_re @ d, dft_im @ d  # (H, H) @ (..., H, W): along the height
    by_hand = torch.sqrt(torch.cat([re, im]) ** 2 + 1e-6).mean()
    assert fft_height_charbonnier(pred, target).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert not torch.isclose(fft_height_charbonnier(pred, target), fft_height_charbonnier(pred.mT, target.mT))
    assert fft_height_charbonnier(pred, target) != charbonnier(pred, target)


def test_authors_image_loss_clamps_the_output_first():
    from unblur.train.config import DEFAULTS
    from unblur.losses import ImageLoss, charbonnier, fft_height_charbonnier, fft_l1

    assert DEFAULTS["loss"]["fft"] == "2d-l1" and DEFAULTS["loss"]["clamp"] is False  # other models: unchanged
    authors = ImageLoss({**DEFAULTS["loss"], "fft_weight": 0.1, "fft": "height-charbonnier", "clamp": True}, "cpu")
    target = torch.rand(1, 3, 16, 16)
    pred = (target + 0.3 * torch.randn(1, 3, 16, 16)).requires_grad_(True)
    loss = authors(pred, target)
    clamped = pred.detach().clamp(0, 1)
    assert torch.allclose(loss, charbonnier(clamped, target) + 0.1 * fft_height_charbonnier(clamped, target))
    loss.backward()
    outside = (pred.detach() < 0) | (pred.detach() > 1)
    assert outside.any() and (pred.grad[outside] == 0).all()
    plain = ImageLoss({**DEFAULTS["loss"], "fft_weight": 0.1}, "cpu")
    assert torch.allclose(plain(pred.detach(), target), charbonnier(pred.detach(), target) + 0.1 * fft_l1(pred.detach(), target))
    with pytest.raises(ValueError, match="loss.fft"):
        ImageLoss({**DEFAULTS["loss"], "fft": "3d"}, "cpu")


def test_inference_noise_is_zero_or_one_seeded_draw():
    """inference_seed None: z_T = z_BE (ε = 0, the mean path); an integer: one ε from a generator seeded with
    it, the same for every image of a batch and every call (the authors seed their test scripts)."""
    x = torch.rand(2, 3, 32, 32)
    zero, seeded = _tiny_authors("nafnet"), _tiny_authors("nafnet", inference_seed=7)
    seeded.load_state_dict(zero.state_dict())
    z_blur = zero.blur_encoder(x, x)
    eps = torch.randn(1, TINY["dim"], generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        by_hand = {
            "zero": sample(zero.schedule, zero.residual_net, zero.noise_net, z_blur),
            "seeded": sample(zero.schedule, zero.residual_net, zero.noise_net, z_blur, eps.expand(2, -1)),
        }
        assert torch.equal(zero(x), zero.backbone(x, by_hand["zero"]))
        assert torch.equal(seeded(x), seeded.backbone(x, by_hand["seeded"]))
        assert torch.equal(seeded(x), seeded(x)) and not torch.allclose(seeded(x), zero(x))
        assert torch.allclose(seeded(x[1:]), seeded(x)[1:], atol=1e-6)  # the same ε whatever the batch
        assert torch.allclose(seeded.image_prior(x[:1]), by_hand["seeded"][:1], atol=1e-6)


def test_bundled_model_file_without_the_new_keys_rebuilds_our_first_version_exactly():
    """nafnet-blurdm was trained before prior_at / prior_init / prior_net existed: absent, they rebuild
    that architecture, and its outputs are the ones it gave before (numbers recorded with that code)."""
    from unblur.modelfile import read_model_meta
    from unblur.zoo import MODELS, load_model

    assert not {"prior_at", "prior_init", "prior_net"} & read_model_meta(MODELS["nafnet-blurdm"].path)["config"].keys()
    model, _ = load_model("nafnet-blurdm")
    assert {k: model.config[k] for k in ("prior_at", "prior_init", "prior_net", "inference_seed")} == {
        "prior_at": "output",
        "prior_init": "identity",
        "prior_net": "v1",
        "inference_seed": None,
    }
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y, z = model(x), model.image_prior(x, tile=16)
    assert y.double().sum().item() == pytest.approx(1058.552573479712, abs=1e-3)
    assert torch.allclose(y[0, :, 5, 7], torch.tensor([0.4902396, 0.7810326, 0.3345611]), atol=1e-5)
    assert torch.allclose(y[0, :, 20, 30], torch.tensor([0.0438779, 0.2701898, 0.2131841]), atol=1e-5)
    assert torch.allclose(z[0, :4], torch.tensor([-0.0368311, -0.094497, -0.0684175, -0.1206768]), atol=1e-5)


def test_blurdm_added_to_the_bundled_trained_nafnet_starts_with_its_output():
    """Our option for plug-and-play: BlurDM's backbone takes nafnet-small's weights, the modulation starts at
    the identity (prior_init: identity), so BlurDM's output is exactly nafnet-small's, in stage 1 (SE's prior)
    as in stage 3 (the diffused prior)."""
    from unblur.zoo import load_model

    plain, meta = load_model("nafnet-small")
    backbone_config = {k: v for k, v in meta["config"].items() if k != "prior_dim"}
    model = BlurDM(**{**TINY, **AUTHORS, "prior_init": "identity", "backbone_config": backbone_config}, stage=1)
    model.init_backbone(plain, meta["arch"])
    sharp = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, 1, 2, count_include_pad=False)
    with torch.no_grad():
        expected = plain(blurred)
        assert torch.equal(model.eval().validation_output(blurred, sharp), expected)  # stage 1: SE's prior
        model.set_stage(3)
        assert torch.equal(model.eval()(blurred), expected)
    with pytest.raises(ValueError, match="prior_init: identity"):
        BlurDM(**{**TINY, **AUTHORS, "backbone_config": backbone_config}).init_backbone(plain, meta["arch"])
    with pytest.raises(ValueError, match="size"):
        BlurDM(**{**TINY, **AUTHORS, "prior_init": "identity"}).init_backbone(plain, meta["arch"])


def test_stage_1_starts_from_a_plain_backbone_model_file(sharp_folder, tmp_path):
    """train.init may name a plainly trained backbone's model file: stage 1 starts from its weights (BlurDM's
    init_from, the method contract's hook for train.init)."""
    from unblur import nn as backbones
    from unblur.modelfile import load_model_file, save_model_file
    from unblur.train.loop import train

    torch.manual_seed(3)
    plain = backbones.build("nafnet", backbones.backbone_module("nafnet").TINY)
    save_model_file(tmp_path / "plain.safetensors", plain, "nafnet")
    sets = [
        "model.arch=blurdm",
        *[f"model.{k}={v}" for k, v in TINY.items() if k != "backbone_config"],
        "model.backbone_config={width: 8, enc_blocks: [1, 1], middle_blocks: 1, dec_blocks: [1, 1]}",
        *[f"model.{k}={v}" for k, v in AUTHORS.items() if k != "prior_init"],
        "model.prior_init=identity",
        "model.stage=1",
        f"train.init={tmp_path / 'plain.safetensors'}",
        "data.val=",
        "data.batch=2",
        "optim.lr=0",
        "optim.warmup=0",
        "train.amp=none",
        "train.channels_last=false",
    ]
    train(engine_config(sharp_folder, 1, *sets), tmp_path / "run", quiet=True)
    model, _ = load_model_file(tmp_path / "run" / "last.safetensors")
    sharp = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model.validation_output(sharp.flip(-1), sharp), plain.eval()(sharp.flip(-1)), atol=1e-6)
    # a model of another backbone cannot start it
    other = backbones.build("mimo-unet-plus", backbones.backbone_module("mimo-unet-plus").TINY)
    save_model_file(tmp_path / "other.safetensors", other, "mimo-unet-plus")
    sets[sets.index(f"train.init={tmp_path / 'plain.safetensors'}")] = f"train.init={tmp_path / 'other.safetensors'}"
    with pytest.raises(ValueError, match="cannot start from a mimo-unet-plus model"):
        train(engine_config(sharp_folder, 1, *sets), tmp_path / "run2", quiet=True)


def test_blurdm_configs_build_the_authors_blurdm_and_the_small_loformer():
    """Every shipped BlurDM config sets the authors' layout and loss (the plug-and-play config starts its
    modulation at the identity instead, our option for adding BlurDM to a trained network); LoFormer is the
    authors' LoFormer-S (LoFormerPrior's defaults: dim 32, [1, 2, 3] / 7 / [3, 2, 2] pairs of blocks, heads [1, 2, 4] / 8)."""
    from pathlib import Path

    from unblur.train.config import load_config

    folder = Path(__file__).parents[1] / "src" / "unblur" / "configs" / "blurdm"
    for path in sorted(folder.glob("*.yaml")):
        cfg = load_config(path)
        expected = {**AUTHORS, "prior_init": "identity"} if cfg["train"]["init"] else AUTHORS
        assert {k: cfg["model"][k] for k in AUTHORS} == expected, path.name
        assert (cfg["loss"]["fft"], cfg["loss"]["clamp"], cfg["loss"]["fft_weight"]) == ("height-charbonnier", True, 0.1)
        assert cfg["loss"]["pixel"] == "charbonnier"
    loformer = load_config(folder / "loformer.yaml")["model"]["backbone_config"]
    pairs = {"enc_blocks": [1, 2, 3], "middle_blocks": 7, "dec_blocks": [3, 2, 2]}
    assert loformer == {
        "width": 32,
        **{k: [2 * n for n in v] if isinstance(v, list) else 2 * v for k, v in pairs.items()},
        "heads": [1, 2, 4],
        "middle_heads": 8,
    }

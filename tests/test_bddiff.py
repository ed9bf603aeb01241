"""BD-Diff: the extractors (token shapes for any size, the structure map, determinism), the generator and
its three tasks, sampling and transfer, training through the engine."""

import importlib.util

import numpy as np
import pytest
import torch
from conftest import TINY_METHODS, engine_config

from unblur.methods.bddiff import BlurDecoupler, sincos_2d

TINY = {"in_channels": 4, "width": 16, "patch": 2, "structure_queries": 6, "blur_queries": 3, "layers": 1, "heads": 2}


@pytest.mark.parametrize("size", [(8, 8), (14, 22), (2, 2)])
def test_token_shapes_do_not_depend_on_the_image_size_and_the_map_has_the_inputs(size):
    net = BlurDecoupler(**TINY).eval()
    x = torch.randn(2, 4, *size)
    with torch.no_grad():
        m, s, b = net.read(x)
        assert torch.allclose(b, net.blur(x), atol=1e-6)
    assert m.shape == x.shape and s.shape == (2, 6, 16) and b.shape == (2, 3, 16)
    assert net.sharp_blur(2).shape == b.shape and net.condition(s, b).shape == (2, 9, 16)
    with pytest.raises(ValueError, match="multiples of 2"):
        net.read(torch.randn(1, 4, 9, 8))


def test_same_seed_same_network_and_tokens():
    x = torch.randn(1, 4, 10, 12)
    outs = []
    for _ in range(2):
        torch.manual_seed(4)
        net = BlurDecoupler(**TINY).eval()
        with torch.no_grad():
            outs.append(net.read(x))
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1]))
    assert BlurDecoupler(**BlurDecoupler(**TINY).config).config == TINY


def test_the_tokens_read_the_image():
    """Different images give different tokens, and a gradient reaches the encoder from either stream."""
    net = BlurDecoupler(**TINY)
    a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    assert not torch.allclose(net.read(a).structure, net.read(b).structure)
    net.blur(a).square().sum().backward()  # squared: a plain sum of LayerNorm outputs has no gradient but rounding
    assert net.encoder.patch.weight.grad.abs().sum() > 0 and net.structure_former.queries.grad is None
    net.zero_grad()
    net.read(a).structure_map.sum().backward()  # the map is made from the shared features
    assert net.encoder.patch.weight.grad.abs().sum() > 0 and net.blur_former.queries.grad is None


def test_position_codes_are_distinct_per_place():
    codes = sincos_2d(4, 5, 16)
    assert codes.shape == (20, 16) and torch.unique(codes, dim=0).shape[0] == 20
    with pytest.raises(ValueError):
        sincos_2d(2, 2, 10)


# -- the generator and its three tasks (BDDiff), on a tiny random latent diffusion model -------------------

BD_TINY = TINY_METHODS["bd-diff-small"]


def bd_model(**weights):
    pytest.importorskip("diffusers")
    from unblur.methods.bddiff import BDDiff

    torch.manual_seed(0)
    return BDDiff(**BD_TINY, **weights)


def bd_batch(size: int = 16):
    """(blurred, sharp, target): synthetic pairs blurred by a 3x3 box, unpaired targets by a horizontal 1x7 box."""
    gen = torch.Generator().manual_seed(3)
    sharp = torch.rand(2, 3, size, size, generator=gen)
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1, count_include_pad=False)
    target = torch.nn.functional.avg_pool2d(
        torch.rand(2, 3, size, size, generator=gen), (1, 7), 1, (0, 3), count_include_pad=False
    )
    return blurred, sharp, target


@pytest.mark.parametrize(
    "task, weights",
    [
        ("deblur", {"w_deblur": 1.0, "w_transfer": 0.0, "w_recon": 0.0}),
        ("transfer", {"w_deblur": 0.0, "w_transfer": 1.0, "w_recon": 0.0, "w_consistency": 1.0}),
        ("unpaired", {"w_deblur": 0.0, "w_transfer": 1.0, "w_recon": 0.0, "w_consistency": 1.0, "w_paired_transfer": 0.0}),
        ("recon", {"w_deblur": 0.0, "w_transfer": 0.0, "w_recon": 1.0}),
    ],
)
def test_each_task_alone_trains_the_unet_and_decoupler_and_its_loss_falls(task, weights):
    net = bd_model(**weights).train()
    vae = {n: p.clone() for n, p in net.vae.named_parameters()}
    assert not net.vae.training and not any(p.requires_grad for p in net.vae.parameters())
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    blurred, sharp, target = bd_batch()
    losses, terms = [], []
    for _ in range(20):
        loss, step_terms = net.loss(blurred, sharp, target, generator=torch.Generator().manual_seed(0))  # a fixed noise and t
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        terms.append(step_terms)
    expected = {"deblur": {"deblur"}, "transfer": {"transfer", "consistency"}, "unpaired": {"consistency"}, "recon": {"recon"}}
    expected = expected[task]
    assert set(terms[0]) == expected
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(terms[-1][k] < terms[0][k] for k in expected), (terms[0], terms[-1])
    assert all(torch.equal(p, vae[n]) for n, p in net.vae.named_parameters())  # the VAE stays frozen
    assert net.decoupler.encoder.patch.weight.grad.abs().sum() > 0 and net.unet.conv_in.weight.grad.abs().sum() > 0
    # a part no task uses is frozen (data-parallel training needs a gradient for every trained weight)
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert net.decoupler.sharp_tokens.requires_grad == (task == "deblur")


def test_the_tasks_are_summed_with_their_weights_and_target_is_optional():
    blurred, sharp, target = bd_batch()
    net = bd_model(w_deblur=1.0, w_transfer=0.5, w_recon=0.25, w_consistency=0.1)
    loss, t = net.loss(blurred, sharp, target, generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(
        t["deblur"] + 0.5 * (t["transfer"] + 0.1 * t["consistency"]) + 0.25 * t["recon"], rel=1e-5
    )
    assert set(net.loss(blurred, sharp, generator=torch.Generator().manual_seed(1))[1]) == {"deblur", "transfer", "recon"}
    # the options: the supervised transfer term weighed inside task 2, the decoupling regulariser beside the tasks
    net = bd_model(w_deblur=1.0, w_transfer=0.5, w_recon=0.25, w_consistency=0.1, w_paired_transfer=0.2, w_decouple=0.3)
    loss, t = net.loss(blurred, sharp, target, generator=torch.Generator().manual_seed(1))
    expected = t["deblur"] + 0.5 * (0.2 * t["transfer"] + 0.1 * t["consistency"]) + 0.25 * t["recon"] + 0.3 * t["decouple"]
    assert loss.item() == pytest.approx(expected, rel=1e-5) and 0 < t["decouple"] < 3
    unpaired = bd_model(w_deblur=0.0, w_transfer=1.0, w_recon=0.0, w_paired_transfer=0.0)
    with pytest.raises(ValueError, match="needs data.target"):  # task 2 without pairs has nothing to learn from
        unpaired.loss(blurred, sharp)
    with pytest.raises(ValueError, match="w_paired_transfer or w_consistency"):
        bd_model(w_paired_transfer=0.0, w_consistency=0.0)
    # the method contract: training_loss takes the engine's batch (noise from the global generator), terms included
    batch = {"blurred": blurred, "sharp": sharp, "target": target}
    torch.manual_seed(5)
    a, terms = net.training_loss(batch, image_loss=None)
    torch.manual_seed(5)
    assert torch.equal(a, net.training_loss(batch, image_loss=None)[0]) and set(terms) == set(t)


def test_separation_asks_for_nearer_than_and_ignores_scale():
    from unblur.methods.bddiff import separation

    a, n = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    p = a + 0.1 * torch.randn(3, 5, 4)
    assert separation(a, a, n) == 0 and separation(a, n, n) == pytest.approx(0.5) and separation(a, p, n) < 0.1
    assert separation(10 * a, 10 * p, 10 * n) == pytest.approx(separation(a, p, n).item(), rel=1e-5)  # shrinking gains nothing
    assert separation(a, n, p) > 0.9


def test_shake_kernels_are_the_presets_and_follow_the_seed():
    from unblur.methods.bddiff import shake_kernels

    k = shake_kernels(3, torch.Generator().manual_seed(2))
    assert k.shape == (3, 25, 25) and torch.allclose(k.sum((1, 2)), torch.ones(3)) and k.min() >= 0
    assert torch.equal(k, shake_kernels(3, torch.Generator().manual_seed(2)))
    assert not torch.equal(k, shake_kernels(3, torch.Generator().manual_seed(3))) and not torch.equal(k[0], k[1])


def test_the_decoupling_regulariser_teaches_the_decoupler_blur_from_scene():
    """Trained on the regulariser alone, the decoupler's structure (map and tokens) of a re-blurred scene ends
    nearer the same scene's other blurs than another scene under the same blur, and its blur tokens nearer the
    other scene with the same blur than the same scene's other blurs: the two distances the diagnostic reports."""
    from unblur.methods.bddiff import separation, stack

    net = bd_model(w_decouple=1.0).train()
    gen = torch.Generator().manual_seed(5)
    sharp = torch.nn.functional.avg_pool2d(torch.rand(4, 3, 32, 32, generator=gen), 3, 1, 1)  # textures, not noise
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, 1, 2, count_include_pad=False)
    opt = torch.optim.Adam(net.decoupler.parameters(), lr=3e-3)
    d = net.decoupler
    values = []
    for _ in range(30):
        r_blur, r_sharp = d.read(net.encode(blurred)), d.read(net.encode(sharp))
        value = net.decoupling(sharp, r_blur, r_sharp, torch.Generator().manual_seed(0))  # the same kernels each step
        opt.zero_grad()
        value.backward()
        opt.step()
        values.append(value.item())
    assert values[-1] < 0.5 * values[0], values
    assert net.unet.conv_in.weight.grad is None  # it reads the decoupler only
    with torch.no_grad():  # the views of the last step, read again: each separation below 1/2 means "nearer"
        v, w = net.reblurred(sharp, torch.Generator().manual_seed(0))
        scene, v, w = stack(d.read(net.encode(blurred)), d.read(net.encode(sharp))), stack(v, v), stack(w, w)
        assert separation(v.structure_map, scene.structure_map, w.structure_map) < 0.5
        assert separation(v.structure, scene.structure, w.structure) < 0.5
        assert separation(v.blur, w.blur, scene.blur) < 0.5
    with pytest.raises(ValueError, match="at least 2"):
        net.decoupling(sharp[:1], r_blur, r_sharp)


def test_the_unet_reads_the_structure_map_and_the_tokens():
    net = bd_model().eval()
    d, z = net.decoupler, net.encode(bd_batch()[0])
    m, s, b = d.read(z)
    assert z.shape == m.shape == (2, 4, 8, 8) and s.shape == (2, 8, 32) and b.shape == (2, 4, 32)
    t, z_t = torch.tensor([400, 400]), torch.randn_like(z)
    with torch.no_grad():
        sharp_ctx = net.generate(z_t, t, m, d.condition(s, d.sharp_blur(2)))
        assert sharp_ctx.shape == z.shape
        assert not torch.allclose(sharp_ctx, net.generate(z_t, t, m, d.condition(s, b)))  # the blur tokens
        assert not torch.allclose(sharp_ctx, net.generate(z_t, t, m.flip(0), d.condition(s, d.sharp_blur(2))))  # the map


def test_transfer_renders_at_the_structure_images_size():
    net = bd_model().eval()
    gen = torch.Generator().manual_seed(0)
    structure, blur = torch.rand(2, 3, 20, 12, generator=gen), torch.rand(1, 3, 16, 24, generator=gen)
    out = net.transfer(structure, blur, steps=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == structure.shape and out.min() >= 0 and out.max() <= 1
    again = net.transfer(structure, blur, steps=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_deblurring_is_deterministic_for_a_seed_and_any_size():
    net = bd_model().eval()
    blurred = bd_batch()[0][:, :, :13, :15]
    a = net.sample(blurred, steps=2, generator=torch.Generator().manual_seed(7))
    b = net.sample(blurred, steps=2, generator=torch.Generator().manual_seed(7))
    c = net.sample(blurred, steps=2, generator=torch.Generator().manual_seed(8))
    assert a.shape == blurred.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(net(blurred), net(blurred)) and net(blurred).shape == blurred.shape  # validation: seed 0
    assert torch.equal(net(blurred), net.sample(blurred, 2, torch.Generator().manual_seed(0)))  # val_steps = 2


def test_anchored_sampling_starts_from_the_blurred_latent():
    """--strength through the shared latent code: strength 1 is sampling from noise; below 1 another result, the
    same for a seed; ``strength`` in the config is the default; BD-Diff has no z_s to start from."""
    net = bd_model().eval()
    blurred = bd_batch()[0]

    def sample(model, **anchoring):
        return model.sample(blurred, 4, torch.Generator().manual_seed(7), **anchoring)

    plain, anchored = sample(net), sample(net, strength=0.5)
    assert torch.equal(plain, sample(net, strength=1.0)) and not torch.equal(plain, anchored)
    assert torch.equal(anchored, sample(net, strength=0.5, start="blurred"))
    anchored_model = bd_model(strength=0.5).eval()
    assert anchored_model.config["strength"] == 0.5 and torch.equal(sample(anchored_model), anchored)
    with pytest.raises(ValueError, match="start must be one of blurred"):
        sample(net, strength=0.5, start="zs")


def test_large_images_are_denoised_in_latent_tiles_each_with_its_own_tokens():
    net = bd_model().eval()
    blurred = torch.rand(1, 3, 40, 28, generator=torch.Generator().manual_seed(2))

    def sample(tile: int) -> torch.Tensor:
        return net.sample(blurred, 2, torch.Generator().manual_seed(3), tile=tile)

    tiled = sample(16)
    assert tiled.shape == blurred.shape and torch.equal(tiled, sample(16))
    assert not torch.equal(tiled, sample(0))  # whole: one set of tokens for the whole image
    assert torch.equal(sample(64), sample(0))  # one tile: the same as whole
    with pytest.raises(ValueError, match="kernels"):
        net.sample(blurred, 2, kernels=True)


def test_config_rebuilds_the_model_and_the_vae_file_is_not_part_of_it(tmp_path):
    import json

    from safetensors.torch import load_file

    from unblur.methods import build
    from unblur.methods.small_sd import SmallVAE
    from unblur.modelfile import save_model_file

    torch.manual_seed(1)
    vae_file = save_model_file(tmp_path / "vae.safetensors", SmallVAE(widths=[8, 16]), "small-vae")
    net = bd_model(vae=str(vae_file))
    assert "vae" not in net.config and json.loads(json.dumps(net.config)) == net.config
    stage = SmallVAE(widths=[8, 16])
    stage.load_state_dict(load_file(str(vae_file)))
    assert all(torch.equal(a, b) for a, b in zip(net.vae.state_dict().values(), stage.vae.state_dict().values()))
    rebuilt = build("bd-diff-small", net.config)
    rebuilt.load_state_dict(net.state_dict())
    blurred = bd_batch()[0]
    assert torch.equal(rebuilt.eval()(blurred), net.eval()(blurred))
    with pytest.raises(ValueError, match="widths"):
        bd_model(vae=str(vae_file), latent_channels=8)


def blurred_folder(folder, sizes):
    """A target domain: photo-like images smeared horizontally (a 1x9 box), saved as PNGs."""
    import cv2
    from conftest import textured
    from PIL import Image

    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(cv2.blur(textured(h, w, seed=10 + i), (9, 1))).save(folder / f"t{i}.png")
    return folder


def test_unpaired_crops_are_seeded_per_step_and_pad_small_images(tmp_path):
    from unblur.data.synthetic import UnpairedCrops, load_folder

    images = load_folder(blurred_folder(tmp_path / "target", [(40, 48), (10, 12)]))
    crops = UnpairedCrops(images, crop=24, batch=3, seed=2)
    a = crops[5]
    assert a.shape == (3, 3, 24, 24) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, crops[5]) and not torch.equal(a, crops[6])
    assert torch.equal(UnpairedCrops(images, 24, 2, seed=2, offset=1)[5], a[1:])  # a second process's slice


def bd_config(sharp_folder, target, steps, *overrides):
    """A tiny BD-Diff run: 16-px crops in pairs, crops of ``target`` as the target domain, no validation."""
    model = ["model.arch=bd-diff-small", *[f"model.{k}={v}" for k, v in BD_TINY.items()]]
    run = ["data.val=", f"data.target={target}", "data.crop=16", "data.batch=2", "optim.warmup=1", "train.ckpt_every=2"]
    return engine_config(sharp_folder, steps, *model, *run, *overrides)


def test_bd_diff_trains_through_the_engine_with_an_unpaired_target_domain(sharp_folder, tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    import functools

    from unblur.methods.bddiff import BDDiff
    from unblur.modelfile import load_model_file
    from unblur.train.loop import train

    target = blurred_folder(tmp_path / "target", [(40, 48), (12, 20), (30, 30)])
    seen = []
    original = BDDiff.training_loss

    @functools.wraps(original)
    def spy(self, batch, image_loss):
        seen.append(batch.get("target"))
        return original(self, batch, image_loss)

    monkeypatch.setattr(BDDiff, "training_loss", spy)
    extra = [f"data.val={sharp_folder}", "data.val_crop=16", "data.val_images=2", "train.val_every=2"]
    cfg = bd_config(sharp_folder, target, 4, *extra, "train.tensorboard=true", "train.log_every=2")
    summary = train(cfg, tmp_path / "run", quiet=True)
    assert len(summary["losses"]) == 4 and all(torch.isfinite(torch.tensor(summary["losses"])))
    if importlib.util.find_spec("tensorboard"):  # each task's loss is logged beside the total
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
        acc.Reload()
        for task in ("deblur", "transfer", "consistency", "recon"):
            assert [e.step for e in acc.Scalars(f"loss/{task}")] == [2, 4]
    assert len(seen) == 4 and all(t is not None and t.shape == (2, 3, 16, 16) for t in seen)
    model, meta = load_model_file(tmp_path / "run" / "last.safetensors")
    assert meta["arch"] == "bd-diff-small" and meta["step"] == 4 and isinstance(model, BDDiff)
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    from unblur.restore import make_restorer  # what `unblur deblur --model last.safetensors` runs

    rgb = torch.rand(21, 18, 3).numpy()
    assert make_restorer(tmp_path / "run" / "last.safetensors", device="cpu").restore(rgb).shape == rgb.shape


def test_a_resumed_run_draws_the_same_target_crops(sharp_folder, tmp_path):
    pytest.importorskip("diffusers")
    from unblur.train.loop import train

    target = blurred_folder(tmp_path / "target", [(40, 48), (12, 20)])
    straight = train(bd_config(sharp_folder, target, 4), tmp_path / "a", quiet=True)
    train(bd_config(sharp_folder, target, 4), tmp_path / "b", quiet=True, stop_at=2)
    resumed = train(bd_config(sharp_folder, target, 4), tmp_path / "b", resume="auto", quiet=True)
    assert resumed["start"] == 2 and resumed["losses"] == straight["losses"][2:]


def test_a_target_domain_needs_a_method_that_uses_it(sharp_folder, tmp_path):
    from unblur.train.loop import train

    target = blurred_folder(tmp_path / "target", [(40, 48)])
    cfg = bd_config(sharp_folder, target, 1)
    cfg["model"] = {"arch": "nafnet", "width": 8, "enc_blocks": [1], "middle_blocks": 1, "dec_blocks": [1]}
    with pytest.raises(ValueError, match="data.target"):
        train(cfg, tmp_path / "n", quiet=True)


def test_transfer_command_writes_the_structure_images_size_and_refuses_other_models(tmp_path, capsys):
    from unblur.cli import main
    from unblur.io import read_image, write_image
    from unblur.modelfile import save_model_file

    model = save_model_file(tmp_path / "bd.safetensors", bd_model(), "bd-diff-small")
    rng = np.random.default_rng(0)
    write_image(tmp_path / "a.png", rng.random((20, 28, 3)).astype(np.float32))
    write_image(tmp_path / "b.png", rng.random((16, 16, 3)).astype(np.float32))
    args = ["transfer", "--structure", str(tmp_path / "a.png"), "--blur", str(tmp_path / "b.png"), "--model", str(model)]
    assert main([*args, "-o", str(tmp_path / "c.png"), "--steps", "2", "--seed", "4"]) == 0
    assert main([*args, "-o", str(tmp_path / "d.png"), "--steps", "2", "--seed", "4"]) == 0
    c, d = read_image(tmp_path / "c.png")[0], read_image(tmp_path / "d.png")[0]
    assert c.shape == (20, 28, 3) and np.array_equal(c, d)
    assert main([*args, "-o", str(tmp_path / "c.png")]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    args[-1] = "nafnet-small"
    assert main([*args, "-o", str(tmp_path / "e.png")]) == 2
    assert "cannot transfer blur" in capsys.readouterr().err


def test_the_bundled_model_renders_the_scene_and_transfers_through_the_cli(tmp_path):
    """bd-diff-small as shipped, on a real photo (scikit-image's public-domain camera) blurred by a 7-px
    horizontal box: the deblurred result renders the scene (the tokens-only design gave ~11 dB here:
    an average image), the same seed gives the same file, and `unblur transfer` runs with it."""
    pytest.importorskip("diffusers")
    import cv2
    from skimage import data

    from unblur.cli import main
    from unblur.io import read_image, write_image
    from unblur.metrics import psnr

    sharp = np.repeat(data.camera()[200:296, 180:308, None], 3, axis=2).astype(np.float32) / 255
    blurred = cv2.blur(sharp, (7, 1))
    write_image(tmp_path / "blurred.png", blurred)
    args = ["deblur", str(tmp_path / "blurred.png"), "--model", "bd-diff-small", "--steps", "5", "--seed", "1"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0 and main([*args, "-o", str(tmp_path / "b")]) == 0
    a, b = read_image(tmp_path / "a" / "blurred.png")[0], read_image(tmp_path / "b" / "blurred.png")[0]
    assert a.shape == sharp.shape and np.array_equal(a, b)
    assert psnr(a, sharp) > 18, psnr(a, sharp)
    write_image(tmp_path / "sharp.png", sharp)
    transfer = ["transfer", "--structure", str(tmp_path / "sharp.png"), "--blur", str(tmp_path / "blurred.png")]
    assert main([*transfer, "--model", "bd-diff-small", "--steps", "5", "-o", str(tmp_path / "t.png")]) == 0
    assert read_image(tmp_path / "t.png")[0].shape == sharp.shape
    assert main([*args, "-o", str(tmp_path / "k"), "--save-kernels"]) == 2  # BD-Diff predicts no kernels


def test_the_decoupled_config_trains_with_its_options(sharp_folder, tmp_path):
    """The retraining config (src/unblur/configs/bddiff/decoupled.yaml), shrunk to a tiny model and two steps: task 2
    is unpaired only, the decoupling regulariser is on, and every term reaches the log."""
    pytest.importorskip("diffusers")
    from pathlib import Path

    from unblur.modelfile import load_model_file
    from unblur.train.config import load_config
    from unblur.train.loop import train

    path = Path(__file__).parents[1] / "src" / "unblur" / "configs" / "bddiff" / "decoupled.yaml"
    cfg = load_config(path)
    assert cfg["model"]["w_paired_transfer"] == 0 and cfg["model"]["w_decouple"] > 0 and cfg["model"]["w_consistency"] > 0
    target = blurred_folder(tmp_path / "target", [(40, 48), (30, 30)])
    tiny = [f"model.{k}={v}" for k, v in BD_TINY.items()] + ["model.vae=", f"data.train={sharp_folder}", "data.val="]
    run = [f"data.target={target}", "data.crop=16", "data.batch=2", "data.workers=0", "optim.steps=2", "optim.warmup=1"]
    cfg = load_config(path, [*tiny, *run, "train.device=cpu", "train.tensorboard=false", "train.log_every=1"])
    summary = train(cfg, tmp_path / "run", quiet=True)
    assert len(summary["losses"]) == 2 and all(torch.isfinite(torch.tensor(summary["losses"])))
    model, _ = load_model_file(tmp_path / "run" / "last.safetensors")
    assert model.w_paired_transfer == 0 and model.w_decouple == cfg["model"]["w_decouple"]
    _, terms = model.train().loss(*bd_batch(), generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"deblur", "consistency", "recon", "decouple"}


def test_the_token_diagnostic_reports_both_distances_per_model(sharp_folder, tmp_path, monkeypatch, capsys):
    """scripts/bddiff_tokens.py on two model files: every distance of the issue's acceptance, printed and in the JSON."""
    import json
    import runpy
    import sys
    from pathlib import Path

    from unblur.modelfile import save_model_file

    files = [str(save_model_file(tmp_path / f"m{i}.safetensors", bd_model(w_decouple=i), "bd-diff-small")) for i in (0, 1)]
    out = tmp_path / "tokens.json"
    script = Path(__file__).parents[1] / "scripts" / "bddiff_tokens.py"
    argv = [str(script), *files, "--images", str(sharp_folder), "-n", "3", "--crop", "32", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    results = json.loads(out.read_text())
    assert list(results) == files and capsys.readouterr().out.count("structure map: one scene, two blurs") == 2
    for figures in results.values():
        assert {"blur: same blur, other photo", "blur: own sharp twin", "structure tokens: two scenes, one blur"} <= set(figures)
        assert all(value > 0 for value in figures.values())

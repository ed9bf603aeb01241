"""DeblurDiff as the authors run it, on a tiny Stable Diffusion folder (their LKPN, the empty prompt from the
folder's text encoder kept in the model file, their value ranges, posterior samples, ancestral DDPM on
respaced steps, AdaIN on the unclamped decode), older model files, and anchored sampling (our design)."""

import json
import shutil
import warnings

import pytest
import torch

pytest.importorskip("diffusers")

from unblur.diffusion import samplers
from unblur.methods import sd_loading
from unblur.methods.deblurdiff import DeblurDiff, DeblurDiffSD
from unblur.methods.deblurdiff_core import LKPN, AuthorsLKPN, eac
from unblur.methods.latent import adain_colour_fix
from unblur.modelfile import load_model_file, save_model_file
from unblur.nn.layers import pad_to_multiple

TINY = dict(kernel_size=3, lkpn_width=8, val_steps=2)


def photo(h: int = 16, w: int = 16, seed: int = 3) -> torch.Tensor:
    """(1, 3, h, w) in [0, 1], a smooth image reaching both 0 and 1."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w, generator=gen), 3, 1, 1, count_include_pad=False)
    x = (x - x.min()) / (x.max() - x.min())
    return x


def as_if_trained(net, seed: int = 0):
    """Perturb the LKPN (whose last layer starts at zero) so that z_s differs from z_blur."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.lkpn.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return net


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- the empty prompt ---------------------------------------------------------------------------------
def test_the_empty_prompt_is_the_text_encoders_kept_in_the_model_file(tiny_sd_text, tmp_path, monkeypatch):
    """"" through the folder's tokenizer and text encoder (77 tokens: start, end, "!" padding = 0), used by the UNet,
    stored in the model file; a folder without a text encoder then runs the file, the encoder never called."""
    root, encoder = tiny_sd_text
    torch.manual_seed(0)
    net = as_if_trained(DeblurDiffSD(str(root), **TINY)).eval()
    ids = torch.tensor([[encoder.config.bos_token_id, encoder.config.eos_token_id] + [0] * 75])
    with torch.no_grad():
        expected = encoder(ids).last_hidden_state
    context = net.context(2, "cpu")
    assert context.shape == (2, 77, 8) and torch.allclose(context, expected.expand(2, -1, -1), atol=1e-6)
    x = photo()
    result = net.sample(x, 2, seeded(5))
    with torch.no_grad():
        prompt = net.empty_context.clone()
        net.empty_context = torch.zeros(1, 1, 8)  # the zero token instead: the UNet sees the difference
        assert not torch.equal(net.sample(x, 2, seeded(5)), result)
        net.empty_context = prompt

    path = save_model_file(tmp_path / "dd.safetensors", net, "deblurdiff")
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(path))["empty_context"], prompt)
    bare = tmp_path / "sd-without-text-encoder"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns("tokenizer", "text_encoder"))

    def no_encoder(*args, **kwargs):
        raise AssertionError("the text encoder was run")

    monkeypatch.setattr(sd_loading, "encode_empty_prompt", no_encoder)
    loaded, meta = load_model_file(path, sd=str(bare))
    assert meta["config"]["empty_prompt"] == "auto" and meta["config"]["lkpn"] == "authors"
    assert torch.equal(loaded.context(1, "cpu"), context[:1])
    assert torch.equal(loaded.sample(x, 2, seeded(5)), result)


def test_without_a_text_encoder_the_zero_token_is_the_documented_fallback(tiny_sd, tiny_sd_text):
    auto = DeblurDiffSD(str(tiny_sd[0]), **TINY)
    with pytest.warns(UserWarning, match="no tokenizer/ and text_encoder/"):
        context = auto.context(1, "cpu")
    assert context.shape == (1, 1, 8) and not context.any()
    with pytest.raises(sd_loading.SDFolderError, match="missing text_encoder/config.json or tokenizer/"):
        DeblurDiffSD(str(tiny_sd[0]), empty_prompt="text_encoder", **TINY).context(1, "cpu")
    chosen = DeblurDiffSD(str(tiny_sd_text[0]), empty_prompt="zeros", **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert chosen.context(1, "cpu").shape == (1, 1, 8)
    with pytest.raises(ValueError, match="empty_prompt must be one of auto, text_encoder, zeros"):
        DeblurDiffSD(str(tiny_sd[0]), empty_prompt="clip", **TINY)


# -- the authors' settings are arch deblurdiff's defaults --------------------------------------------------
def test_arch_deblurdiff_defaults_to_the_authors_choices(tiny_sd):
    import yaml

    net = DeblurDiffSD(str(tiny_sd[0]), empty_prompt="zeros", **TINY)
    assert isinstance(net.lkpn, AuthorsLKPN) and net.sampler is samplers.ddpm
    assert net.condition_range == "unit" and net.posterior_sample and net.colour_fix == "unclamped"
    assert (net.strength, net.start) == (1.0, "zs")
    # their 50 respaced steps: 999/49 apart, rounded, from 999 down to 0 (utils/sampler.py, space_timesteps)
    plan = net.schedule.timesteps(50)
    assert [t for t, _ in plan[:3]] == [999, 979, 958] and plan[-4:] == [(61, 41), (41, 20), (20, 0), (0, -1)]
    from importlib.resources import files

    recipe = yaml.safe_load((files("unblur") / "configs" / "deblurdiff" / "sd21.yaml").read_text())["model"]
    assert recipe["sampler"] == "ddpm" and recipe["val_steps"] == 50 and recipe["lkpn"] == "authors"


def test_ancestral_sampling_is_seeded(tiny_sd):
    torch.manual_seed(0)
    net = as_if_trained(DeblurDiffSD(str(tiny_sd[0]), empty_prompt="zeros", **TINY)).eval()
    x = photo()
    a, b, c = net.sample(x, 3, seeded(7)), net.sample(x, 3, seeded(7)), net.sample(x, 3, seeded(8))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    seen = []
    net.sample(x, 3, seeded(7), callback=seen.append)
    assert [info["t"] for info in seen] == [999, 500, 0]  # respaced: both ends of the schedule (499.5 rounds to even)


def test_value_ranges_and_posterior_samples(tiny_sd, monkeypatch):
    """The authors hand the VAE the blurred image in [0, 1] and the sharp one in [-1, 1], and draw both latents
    from the posterior (seeded); ours: both in [-1, 1], the posterior's mode."""
    authors = DeblurDiffSD(str(tiny_sd[0]), empty_prompt="zeros", **TINY)
    ours = DeblurDiff(sd_loading.load_sd(tiny_sd[0]), kernel_size=3, lkpn_width=8)
    x = photo()
    for net in (authors, ours):
        seen, encode = [], net.vae.encode

        def spy(image, *args, encode=encode, seen=seen, **kwargs):
            seen.append((round(image.min().item(), 6), round(image.max().item(), 6)))
            return encode(image, *args, **kwargs)

        monkeypatch.setattr(net.vae, "encode", spy)
        net.loss(x, x, generator=seeded(0))
        assert seen == ([(0.0, 1.0), (-1.0, 1.0)] if net is authors else [(-1.0, 1.0), (-1.0, 1.0)])
    posterior = authors.vae.encode(x).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=seeded(1))
    drawn = authors.condition(x, generator=seeded(1))
    assert torch.allclose(drawn, (posterior.mean + posterior.std * noise) * authors.scale, atol=1e-6)
    assert not torch.equal(drawn, authors.condition(x, generator=seeded(2)))
    assert torch.equal(ours.condition(x, generator=seeded(1)), ours.encode(x))  # the mode: no randomness


def test_colour_fix_on_the_unclamped_decode(tiny_sd, monkeypatch):
    net = DeblurDiffSD(str(tiny_sd[0]), empty_prompt="zeros", **TINY)
    x = photo(12, 20)  # padded to the UNet's multiple, cropped back
    z = 4 * torch.randn(1, 4, 8, 16, generator=seeded(0))  # a latent whose decode leaves [0, 1]
    monkeypatch.setattr(net, "render", lambda *args, **kwargs: z)
    raw = net.decode(z, clamp=False)[..., :12, :20]
    assert raw.min() < 0 or raw.max() > 1
    unclamped = net.render_image(x, None, 1)[0]
    assert torch.allclose(unclamped, adain_colour_fix(raw, x).clamp(0, 1), atol=1e-6)
    net.colour_fix = "clamped"
    clamped = net.render_image(x, None, 1)[0]
    assert torch.allclose(clamped, adain_colour_fix(raw.clamp(0, 1), x).clamp(0, 1), atol=1e-6)
    assert (clamped - unclamped).abs().max() > 0.01
    with pytest.raises(ValueError, match="colour_fix must be one of clamped, unclamped"):
        DeblurDiffSD(str(tiny_sd[0]), colour_fix="none", **TINY)


# -- the LKPN at the authors' layout ----------------------------------------------------------------
def test_authors_lkpn_layout_in_a_tiny_width():
    """Their LKPN (model/lkpn.py): an SD UNet, multipliers [1, 2, 4, 4], 2 residual blocks per level, cross-attention
    to the text context at the first three levels, output starting at zero."""
    torch.manual_seed(0)
    lkpn = AuthorsLKPN(latent_channels=4, width=8, kernel_size=3, context_dim=8)
    config = lkpn.unet.config
    assert tuple(config.block_out_channels) == (8, 16, 32, 32) and config.layers_per_block == 2
    assert tuple(config.down_block_types) == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert tuple(config.up_block_types) == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert (config.in_channels, config.out_channels, config.cross_attention_dim) == (8, 36, 8) and config.use_linear_projection
    z_blur, z_t = torch.randn(2, 4, 6, 10), torch.randn(2, 4, 6, 10)  # any size: padded inside, cropped back
    context = torch.randn(1, 77, 8)
    fresh = lkpn(z_blur, z_t, torch.tensor([10, 900]), context)
    assert fresh.shape == (2, 36, 6, 10) and not fresh.any()
    assert torch.equal(eac(z_blur, fresh, 3), z_blur)  # a fresh LKPN leaves z_blur as it is
    with torch.no_grad():
        lkpn.unet.conv_out.weight.normal_()
    assert not torch.equal(lkpn(z_blur, z_t, 10, context), lkpn(z_blur, z_t, 10, torch.randn(1, 77, 8)))  # it reads the text
    with pytest.raises(ValueError, match="text context"):
        lkpn(z_blur, z_t, 10)


def test_older_model_files_rebuild_as_they_were_trained(tiny_sd, tmp_path):
    """An arch deblurdiff file written before these settings (no lkpn, ranges, colour fix, spacing, prompt in it)
    loads with our small LKPN, [-1, 1] modes, DDIM on leading steps, the clamped colour fix and the zero token;
    the bundled deblurdiff-small runs with the settings its file records (our small LKPN, clamped colour fix)."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    old = as_if_trained(DeblurDiffSD(str(tiny_sd[0]), sampler="ddim", **TINY, **DeblurDiffSD.file_defaults)).eval()
    assert isinstance(old.lkpn, LKPN) and old.schedule.spacing == "leading"
    written = save_model_file(tmp_path / "new.safetensors", old, "deblurdiff")
    state = {k: v for k, v in load_file(str(written)).items() if k != "empty_context"}
    config = {k: v for k, v in old.config.items() if k not in DeblurDiffSD.file_defaults}
    save_file(state, str(tmp_path / "old.safetensors"), metadata={"unblur": json.dumps({"arch": "deblurdiff", "config": config})})
    loaded, meta = load_model_file(tmp_path / "old.safetensors")
    assert isinstance(loaded.lkpn, LKPN) and meta["config"]["condition_range"] == "signed"
    x = photo()
    assert torch.equal(loaded.sample(x, 2, seeded(4)), old.sample(x, 2, seeded(4)))

    from unblur.zoo import load_model

    bundled, meta = load_model("deblurdiff-small", "cpu")
    assert meta["config"]["lkpn"] == "small" and isinstance(bundled.lkpn, LKPN)
    assert meta["config"]["colour_fix"] == bundled.colour_fix == "clamped"


# -- anchored sampling (ours) -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tiny_sd):
    """DeblurDiff on the tiny model, its latents scaled to a standard deviation of 0.5 (inside the clamp of the
    clean estimate, as a trained model's are about), the LKPN as if trained."""
    from unblur.methods.small_sd import latent_scale

    sd = sd_loading.load_sd(tiny_sd[0])
    torch.manual_seed(0)
    return as_if_trained(DeblurDiff(sd, kernel_size=3, lkpn_width=8, latent_scale=latent_scale(sd.vae, photo()) / 2)).eval()


def decoded(net, latent: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """What the pipeline makes of a final latent: decoded, cropped, colour-fixed."""
    return adain_colour_fix(net.decode(latent)[..., : x.shape[-2], : x.shape[-1]], x).clamp(0, 1)


def test_strength_one_is_sampling_from_noise_exactly(small):
    x = photo()
    today = small.sample(x, 4, seeded(3))
    assert torch.equal(small.sample(x, 4, seeded(3), strength=1.0), today)
    assert torch.equal(small.sample(x, 4, seeded(3), strength=1.0, start="blurred"), today)
    assert torch.equal(small.sample(x, 4, seeded(3), strength=0.9), today)  # round(0.9 * 4) = 4 steps: all of them


def test_small_strength_returns_about_the_anchor(small):
    """From z_s (or the blurred latent) noised to the last step's timestep, one step leaves about that latent;
    deterministic for a seed."""
    x = photo()
    xp, _ = pad_to_multiple(x, small.multiple)
    z_cond, noise = small.condition(xp), torch.randn(small.encode(xp).shape, generator=seeded(3))
    z_s = small.anchor("zs", xp, z_cond, noise, 4)
    assert not torch.allclose(z_s, z_cond, atol=1e-3)  # the LKPN's kernels moved it
    steps = []
    low = small.sample(x, 4, seeded(3), strength=0.1, callback=steps.append)
    assert [info["t"] for info in steps] == [0]  # one step: the last one
    assert torch.equal(small.sample(x, 4, seeded(3), strength=0.1), low)
    assert not torch.equal(small.sample(x, 4, seeded(4), strength=0.1), low)
    # the final latent is about z_s (one step from it noised to t = 0), far from where pure noise leads
    _, z, _ = small.render_image(x, small.predictor(), 4, seeded(3), strength=0.1, start="zs")
    _, from_noise, _ = small.render_image(x, small.predictor(), 4, seeded(3))
    assert (z - z_s).abs().mean() < (from_noise - z_s).abs().mean() / 5
    assert (low - decoded(small, z_s, x)).abs().mean() < (small.sample(x, 4, seeded(3)) - decoded(small, z_s, x)).abs().mean() / 3
    _, z, _ = small.render_image(x, small.predictor(), 4, seeded(3), strength=0.1, start="blurred")
    assert (z - small.encode(xp)).abs().mean() < (from_noise - small.encode(xp)).abs().mean() / 5
    half = []
    small.sample(x, 4, seeded(3), strength=0.5, callback=half.append)
    assert [(info["step"], info["steps"]) for info in half] == [(1, 2), (2, 2)]


def test_anchoring_settings_are_checked(small, tiny_sd):
    x = photo()
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
        small.sample(x, 2, seeded(0), strength=0)
    with pytest.raises(ValueError, match="start must be one of zs, blurred"):
        small.sample(x, 2, seeded(0), strength=0.5, start="sharp")
    net = DeblurDiff(sd_loading.load_sd(tiny_sd[0]), kernel_size=3, lkpn_width=8, strength=0.5, start="blurred")
    assert (net.strength, net.start) == (0.5, "blurred")  # a method setting: the model's own default

"""The noise schedule and the samplers (unblur.diffusion): the same arithmetic as diffusers' DDPM and DDIM
schedulers, so the bundled models sample the same latents, one signature, a callback, chosen by name."""

import pytest
import torch

from unblur.diffusion.samplers import SAMPLERS, ddim, ddpm, get_sampler
from unblur.diffusion.schedules import NoiseSchedule

diffusers = pytest.importorskip("diffusers")

CONFIG = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def toy_predict(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A stand-in network: a smooth function of the latent and the timestep."""
    return torch.tanh(z * 0.7 + t.float() / 1000)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_training_arithmetic_matches_diffusers(prediction):
    theirs = diffusers.DDPMScheduler(**CONFIG, prediction_type=prediction)
    ours = NoiseSchedule.from_config(dict(theirs.config))
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)
    gen = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(3, 4, 5, 5, generator=gen), torch.randn(3, 4, 5, 5, generator=gen)
    t = torch.tensor([0, 499, 999])
    assert torch.equal(ours.add_noise(z0, noise, t), theirs.add_noise(z0, noise, t))
    target = noise if prediction == "epsilon" else theirs.get_velocity(z0, noise, t)
    assert torch.equal(ours.target(z0, noise, t), target)
    # the one-step clean estimate inverts the noising for an exact prediction
    assert torch.allclose(ours.predicted_x0(ours.add_noise(z0, noise, t), target, t), z0, atol=1e-4)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_is_diffusers_ddim_bit_for_bit(prediction, clip):
    scheduler = diffusers.DDIMScheduler.from_config(
        diffusers.DDPMScheduler(**CONFIG, prediction_type=prediction, clip_sample=clip).config
    )
    schedule = NoiseSchedule.from_config(dict(scheduler.config))
    start = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    scheduler.set_timesteps(7)
    z = start
    for t in scheduler.timesteps:
        z = scheduler.step(toy_predict(z, t), t, z).prev_sample
    assert torch.equal(ddim(toy_predict, start, schedule, 7), z)


def test_ddpm_is_diffusers_ancestral_ddpm_bit_for_bit():
    scheduler = diffusers.DDPMScheduler(**CONFIG, prediction_type="v_prediction")
    schedule = NoiseSchedule.from_config(dict(scheduler.config))
    start = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(1))
    scheduler.set_timesteps(5)
    z, gen = start, torch.Generator().manual_seed(2)
    for t in scheduler.timesteps:
        z = scheduler.step(toy_predict(z, t), t, z, generator=gen).prev_sample
    ours = ddpm(toy_predict, start, schedule, 5, torch.Generator().manual_seed(2))
    assert torch.equal(ours, z)
    assert not torch.equal(ddpm(toy_predict, start, schedule, 5, torch.Generator().manual_seed(3)), ours)  # it draws noise


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_share_one_signature_and_report_every_step(name):
    schedule = NoiseSchedule.scaled_linear(prediction="v_prediction", clip=1.0)
    start = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    seen = []
    out = get_sampler(name)(toy_predict, start, schedule, 4, torch.Generator().manual_seed(0), callback=seen.append)
    assert out.shape == start.shape and torch.isfinite(out).all()
    assert [info["step"] for info in seen] == [1, 2, 3, 4] and all(info["steps"] == 4 for info in seen)
    assert [info["t"] for info in seen] == [750, 500, 250, 0] and torch.equal(seen[-1]["latent"], out)
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("euler")


def test_unsupported_scheduler_settings_are_named():
    with pytest.raises(ValueError, match="beta_schedule='squaredcos_cap_v2'"):
        NoiseSchedule.from_config({"beta_schedule": "squaredcos_cap_v2"})
    with pytest.raises(ValueError, match="prediction"):
        NoiseSchedule.from_config({**CONFIG, "prediction_type": "sample"})


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_skipping_leading_steps_continues_a_full_run(name):
    """``skip``: the sampler starts at the timestep of step skip + 1 (SDEdit's start): from the latent a full run
    has there it ends where the full run ends (the same noise for DDPM), counting only the steps it runs."""
    schedule = NoiseSchedule.scaled_linear(prediction="v_prediction", clip=1.0)
    start = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    sampler, gen = get_sampler(name), torch.Generator().manual_seed(1)
    seen = []
    full = sampler(toy_predict, start, schedule, 5, gen, callback=seen.append)
    gen.manual_seed(1)
    if name == "ddpm":  # the noise of the skipped steps is drawn before the rest
        [torch.randn(start.shape, generator=gen) for _ in range(2)]
    rest = []
    out = sampler(toy_predict, seen[1]["latent"], schedule, 5, gen, callback=rest.append, skip=2)
    assert torch.allclose(out, full, atol=1e-6)
    assert [(i["step"], i["steps"], i["t"]) for i in rest] == [(1, 3, 400), (2, 3, 200), (3, 3, 0)]
    with pytest.raises(ValueError, match="skip must be from 0 to 4"):
        sampler(toy_predict, start, schedule, 5, skip=5)


def test_linspace_spacing_is_the_authors_respacing():
    """Respaced timesteps (DeblurDiff's utils/sampler.py, space_timesteps): evenly from T - 1 down to 0, rounded
    (half to even), each step going to the next one; no steps_offset."""
    schedule = NoiseSchedule.scaled_linear(steps_offset=1, spacing="linspace")
    plan = schedule.timesteps(50)
    assert len(plan) == 50 and plan[0] == (999, 979) and plan[-1] == (0, -1)
    assert [t for t, _ in plan][-5:] == [82, 61, 41, 20, 0]  # k * 999 / 49 rounded
    assert all(prev == nxt for (_, prev), (nxt, _) in zip(plan, plan[1:]))
    assert schedule.timesteps(3) == [(999, 500), (500, 0), (0, -1)] and schedule.timesteps(1) == [(0, -1)]
    assert len({t for t, _ in schedule.timesteps(1000)}) == 1000
    with pytest.raises(ValueError, match="timestep spacing must be one of leading, linspace"):
        NoiseSchedule.scaled_linear(spacing="trailing")

import pytest
import torch
from conftest import engine_config, engine_sets
from safetensors.torch import load_file

from unblur.data.synthetic import SyntheticPairs, fixed_pairs, load_folder
from unblur.train.config import load_config, parse_override
from unblur.train.loop import lr_factor, train

# this file's runs: 48-px validation crops, a checkpoint every 3 steps, a log row every step
RUN = ("data.val_crop=48", "optim.lr=2e-3", "train.ckpt_every=3", "train.val_every=1000", "train.log_every=1")


def tiny_config(folder, steps, *overrides):
    return engine_config(folder, steps, *RUN, *overrides)


def test_overrides_parse_as_yaml():
    assert parse_override("optim.lr=3e-4") == {"optim": {"lr": 3e-4}}
    assert parse_override("model.enc_blocks=[1, 2]") == {"model": {"enc_blocks": [1, 2]}}
    cfg = load_config(None, ["train.device=cpu", "data.crop=64"])
    assert cfg["train"]["device"] == "cpu" and cfg["data"]["crop"] == 64
    with pytest.raises(KeyError, match="optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ValueError):
        parse_override("no-equals-sign")


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, 10, 100, 0.01) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] == pytest.approx(0.01, abs=1e-3)


def test_batches_are_deterministic_per_step(sharp_folder):
    ds = SyntheticPairs(load_folder(sharp_folder), crop=32, batch=2, seed=5)
    a, b = ds[3], ds[3]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(ds[4][0], a[0])
    blurred, sharp = a
    assert blurred.shape == sharp.shape == (2, 3, 32, 32)
    assert blurred.min() >= 0 and blurred.max() <= 1


def test_tiny_training_run_improves_validation(sharp_folder, tmp_path):
    from unblur.methods import build
    from unblur.modelfile import load_model_file
    from unblur.train.loop import validate

    cfg = tiny_config(sharp_folder, 40)
    summary = train(cfg, tmp_path / "run", quiet=True)
    images = load_folder(sharp_folder)
    blurred, sharp = fixed_pairs(images, 48, seed=1234)
    torch.manual_seed(cfg["train"]["seed"])
    untrained = build("nafnet", {k: v for k, v in cfg["model"].items() if k != "arch"})
    trained, meta = load_model_file(tmp_path / "run" / "last.safetensors")
    assert meta["step"] == 40
    before, after = validate(untrained, blurred, sharp, "cpu")["psnr"], validate(trained, blurred, sharp, "cpu")["psnr"]
    assert after > before + 3, (before, after)
    assert sum(summary["losses"][-5:]) < sum(summary["losses"][:5])


def test_resume_continues_exactly(sharp_folder, tmp_path):
    straight = train(tiny_config(sharp_folder, 6), tmp_path / "a", quiet=True)
    train(tiny_config(sharp_folder, 6), tmp_path / "b", quiet=True, stop_at=3)
    resumed = train(tiny_config(sharp_folder, 6), tmp_path / "b", resume="auto", quiet=True)
    assert resumed["start"] == 3 and len(resumed["losses"]) == 3
    assert resumed["losses"] == straight["losses"][3:]  # bit-identical on CPU
    a = load_file(str(tmp_path / "a" / "checkpoints" / "ckpt-00000006" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "ckpt-00000006" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_partial_checkpoint_is_ignored(sharp_folder, tmp_path):
    from unblur.train.checkpoint import latest_checkpoint

    train(tiny_config(sharp_folder, 3), tmp_path / "r", quiet=True)
    # a write killed half-way leaves a temporary folder without state.pt
    (tmp_path / "r" / "checkpoints" / ".tmp-crash").mkdir()
    (tmp_path / "r" / "checkpoints" / "ckpt-00000009").mkdir()
    assert latest_checkpoint(tmp_path / "r").name == "ckpt-00000003"


def test_preset_mixture_and_exposure_presets_make_batches(sharp_folder):
    images = load_folder(sharp_folder)
    ds = SyntheticPairs(images, crop=32, batch=4, seed=1, preset="realistic+uniform-kernel")
    blurred, sharp = ds[0]
    assert blurred.shape == sharp.shape == (4, 3, 32, 32) and torch.equal(ds[0][0], blurred)
    vb, vs = fixed_pairs(images, 40, seed=3, preset="realistic")
    assert vb.shape == vs.shape == (len(images), 3, 40, 40) and not torch.equal(vb, vs)
    with pytest.raises(KeyError, match="no-such"):
        SyntheticPairs(images, preset="realistic+no-such")


def test_init_starts_from_a_model_file(sharp_folder, tmp_path):
    from unblur.modelfile import load_model_file

    train(tiny_config(sharp_folder, 3), tmp_path / "a", quiet=True)
    start = tmp_path / "a" / "last.safetensors"
    # zero learning rate: the fine-tuned model must be exactly the one it started from
    train(tiny_config(sharp_folder, 2, f"train.init={start}", "optim.lr=0.0", "train.ema=0.0"), tmp_path / "b", quiet=True)
    a, _ = load_model_file(start)
    b, _ = load_model_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="differs"):
        train(tiny_config(sharp_folder, 1, f"train.init={start}", "model.width=16"), tmp_path / "c", quiet=True)


def test_killed_run_resumes_to_the_same_losses(sharp_folder, tmp_path):
    """SIGKILL a real training process at an arbitrary moment (possibly mid-checkpoint),
    resume with --resume auto: the log equals an uninterrupted run's, step for step."""
    import csv
    import os
    import signal
    import subprocess
    import sys
    import time

    from unblur.train.checkpoint import latest_checkpoint

    sets = engine_sets(sharp_folder, 40, "data.val=", "data.batch=2", "train.ckpt_every=3", "train.log_every=1")

    def cmd(out):
        return [sys.executable, "-m", "unblur", "train", "-q", "--out", str(out), "--resume", "auto"] + [
            a for s in sets for a in ("--set", s)
        ]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while latest_checkpoint(run) is None or latest_checkpoint(run).name < "ckpt-00000006":
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(run).name
    assert killed_at < "ckpt-00000040"
    subprocess.run(cmd(run), env=env, check=True, capture_output=True, timeout=300)
    subprocess.run(cmd(tmp_path / "straight"), env=env, check=True, capture_output=True, timeout=300)

    def losses(folder):
        rows = list(csv.DictReader((folder / "log.csv").open()))
        return [(int(r["step"]), r["loss"]) for r in rows]

    assert losses(run) == losses(tmp_path / "straight") and len(losses(run)) == 40


def test_tensorboard_event_files_hold_the_logged_scalars(sharp_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config(sharp_folder, 4, "train.val_every=2", "train.tensorboard=true"), tmp_path / "r", quiet=True)
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
    assert [e.step for e in acc.Scalars("val_psnr")] == [2, 4] and "val_ssim" in acc.Tags()["scalars"]
    config = (tmp_path / "r" / "config.yaml").read_text()
    assert "val_every: 2" in config  # the resolved config is saved with the run


def test_multiscale_backbone_trains_through_the_engine(sharp_folder, tmp_path):
    """MIMO-UNet+ returns three scales when training; the engine sums the loss over them."""
    cfg = tiny_config(sharp_folder, 3, "model.arch=mimo-unet-plus", "model.width=4", "model.num_res=1", "model.dropout=0.0")
    assert cfg["model"] == {"arch": "mimo-unet-plus", "width": 4, "num_res": 1, "dropout": 0.0}
    summary = train(cfg, tmp_path / "m", quiet=True)
    assert len(summary["losses"]) == 3 and all(x > 0 for x in summary["losses"])


def test_data_folders_are_read_below_the_data_root_and_workers_follow_the_machine(monkeypatch, tmp_path):
    from unblur.data.root import REPOSITORY, data_path, data_root, repository_path
    from unblur.device import cpu_cores, data_workers

    monkeypatch.delenv("UNBLUR_DATA", raising=False)
    assert data_root() == REPOSITORY.parent / "shared"  # beside the repository, whatever the current folder
    monkeypatch.setenv("UNBLUR_DATA", str(tmp_path))
    assert data_path("photos/train") == tmp_path / "photos" / "train"
    assert data_path("photos/val", tmp_path / "other") == tmp_path / "other" / "photos" / "val"  # data.root first
    assert data_path(tmp_path / "abs") == tmp_path / "abs" and data_path("") is None
    # data.cache: pairs synthesised into the repository's gitignored .data/, whatever the data root or current folder
    monkeypatch.chdir(tmp_path)
    assert repository_path(".data/cache-real-world") == REPOSITORY / ".data" / "cache-real-world"
    assert repository_path(tmp_path / "abs") == tmp_path / "abs" and repository_path(None) is None
    assert load_config(None)["data"]["workers"] == "auto"
    assert data_workers("auto") == max(0, cpu_cores() - 1) and data_workers(3) == 3
    assert data_workers("auto", processes=cpu_cores()) == 0  # one core per process: no room for workers
    with pytest.raises(ValueError, match="workers"):
        data_workers(-1)



def test_psnr_loss_is_minus_the_mean_psnr_of_the_images_and_is_chosen_by_name():
    from unblur.losses import ImageLoss, psnr_loss
    from unblur.train.config import DEFAULTS

    target = torch.rand(2, 3, 16, 16)
    pred = target.clone()
    pred[0] += 0.1  # image 0: MSE 1e-2, 20 dB
    pred[1] += 0.01  # image 1: MSE 1e-4, 40 dB
    assert psnr_loss(pred, target, floor=0).item() == pytest.approx(-30.0, abs=1e-3)  # the mean of the dBs
    assert psnr_loss(target, target).item() == pytest.approx(-60.0, abs=1e-3)  # an exact image is worth 60 dB
    chosen = ImageLoss({**DEFAULTS["loss"], "pixel": "psnr"}, "cpu")
    assert chosen(pred, target).item() == pytest.approx(psnr_loss(pred, target).item())
    with pytest.raises(ValueError, match="loss.pixel must be one of charbonnier, l1, psnr"):
        ImageLoss({**DEFAULTS["loss"], "pixel": "l2"}, "cpu")

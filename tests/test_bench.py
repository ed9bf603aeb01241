import json

import numpy as np
import pytest
from conftest import textured
from PIL import Image

from unblur.baselines import richardson_lucy, wiener
from unblur.blur.kernels import motion_kernel
from unblur.blur.synth import blur_image
from unblur.metrics import psnr


def blurred_pair(seed=0, noise=True):
    sharp = textured(96, 128, seed=seed).astype(np.float32) / 255
    rng = np.random.default_rng(seed)
    blurred, meta = blur_image(sharp, rng)
    return sharp, blurred, meta["kernel"]


@pytest.mark.parametrize("method", [wiener, richardson_lucy])
def test_oracle_baselines_improve_with_the_true_kernel(method):
    sharp, blurred, kernel = blurred_pair()
    m = 16  # compare away from the image border, where the blur's reflection padding is unknown to them
    before = psnr(blurred[m:-m, m:-m], sharp[m:-m, m:-m])
    after = psnr(method(blurred, kernel)[m:-m, m:-m], sharp[m:-m, m:-m])
    assert after > before + 1.5, (before, after)
    wrong = motion_kernel(kernel.shape[0], np.random.default_rng(99))  # a different kernel helps far less
    assert psnr(method(blurred, wrong)[m:-m, m:-m], sharp[m:-m, m:-m]) < after - 1


def make_set(root, n=3):
    for d in ("blur", "sharp", "kernel"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        sharp, blurred, kernel = blurred_pair(seed=i)
        Image.fromarray(np.round(sharp * 255).astype(np.uint8)).save(root / "sharp" / f"im{i}.png")
        Image.fromarray(np.round(blurred * 255).astype(np.uint8)).save(root / "blur" / f"im{i}.png")
        np.save(root / "kernel" / f"im{i}.npy", kernel)


def test_bench_writes_report_and_resumes(tmp_path):
    from unblur.cli import main

    make_set(tmp_path / "set")
    out = tmp_path / "report"
    args = ["bench", "--data", str(tmp_path / "set"), "--models", "wiener-oracle,nafnet-small", "--out", str(out), "-q"]
    assert main(args) == 0
    for name in ["report.md", "results.json", "gain-per-image.png", "speed-vs-quality.png", "crops-most-improved.png"]:
        assert (out / name).exists(), name
    report = (out / "report.md").read_text()
    assert "SSIM: variant `basicsr`" in report and "| nafnet-small |" in report and "identity (blurred input)" in report
    results = json.loads((out / "results.json").read_text())
    assert results["summary"]["wiener-oracle"]["images"] == 3 and len(results["rows"]["nafnet-small"]) == 3
    # resumable: a finished image is not recomputed (its cached row is reused as it is)
    cached = out / "cache" / "nafnet-small" / "im0.json"
    row = json.loads(cached.read_text())
    row["psnr"] = 99.0
    cached.write_text(json.dumps(row))
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["rows"]["nafnet-small"][0]["psnr"] == 99.0


def test_bench_errors(tmp_path, capsys):
    from unblur.cli import main

    assert main(["bench", "--data", str(tmp_path)]) == 2
    assert "expected the folders blur/ and sharp/" in capsys.readouterr().err
    make_set(tmp_path / "set", n=1)
    (tmp_path / "set" / "kernel" / "im0.npy").unlink()
    assert main(["bench", "--data", str(tmp_path / "set"), "--models", "rl-oracle", "--out", str(tmp_path / "r")]) == 2
    assert "needs the true kernel" in capsys.readouterr().err


def test_blind_wiener_runs_without_a_kernel():
    from unblur.restore import make_restorer

    sharp = textured(128, 160, seed=4).astype(np.float32) / 255
    r = make_restorer("wiener-blind")
    assert not r.needs_kernel
    out = r.restore(sharp)
    assert out.shape == sharp.shape and out.dtype == np.float32


def test_learning_curves_are_drawn(tmp_path):
    from unblur.bench.report import COLOURS, plot_curves

    path = tmp_path / "curves.png"
    plot_curves(path, {"a": [(0, 24.5), (10, 24.9)], "b": [(5, 24.6), (20, 25.3)]}, "minutes", "PSNR (dB)")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (420, 800, 3)
    for colour in COLOURS[1:3]:  # both lines drawn, each in its own colour
        assert (img == colour).all(axis=-1).sum() > 50


def test_bench_takes_model_files_by_path(tmp_path):
    """A model named by its file (absolute or relative path) gets a cache folder inside the report folder."""
    import shutil

    from unblur.bench.runner import cache_dir
    from unblur.cli import main
    from unblur.zoo import resolve

    make_set(tmp_path / "set", n=1)
    model = tmp_path / "models" / "mine.safetensors"
    model.parent.mkdir()
    shutil.copy(resolve("nafnet-small"), model)
    out = tmp_path / "report"
    assert main(["bench", "--data", str(tmp_path / "set"), "--models", str(model), "--out", str(out), "-q"]) == 0
    folder = cache_dir(out, str(model))
    assert folder.parent == out / "cache" and folder.name.startswith("mine-") and (folder / "im0.json").exists()
    assert f"| {model} |" in (out / "report.md").read_text()
    assert cache_dir(out, "other/mine.safetensors") != folder

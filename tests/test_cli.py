"""The `unblur` command end to end, in a real subprocess, on real files."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import textured
from PIL import Image


def unblur(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "unblur", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_commands():
    r = unblur("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ["deblur", "models", "demo", "train"])


def test_deblur_writes_same_size_png(photo, tmp_path):
    r = unblur("deblur", photo, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    out = Image.open(tmp_path / "out" / "photo.png")
    assert out.size == Image.open(photo).size and out.mode == "RGB"


def test_16bit_in_16bit_out(tmp_path):
    import cv2

    src = (textured(40, 36).astype(np.uint16) * 257)[..., ::-1]
    cv2.imwrite(str(tmp_path / "deep.png"), src)
    r = unblur("deblur", tmp_path / "deep.png", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    out = cv2.imread(str(tmp_path / "out" / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == src.shape


def test_never_overwrites_without_asking(photo, tmp_path):
    out = tmp_path / "out"
    assert unblur("deblur", photo, "-o", out).returncode == 0
    (out / "photo.png").write_bytes(b"precious")
    r = unblur("deblur", photo, "-o", out)
    assert r.returncode == 1 and "exists" in r.stderr and "--overwrite" in r.stderr
    assert (out / "photo.png").read_bytes() == b"precious"
    assert unblur("deblur", photo, "-o", out, "--overwrite").returncode == 0
    assert Image.open(out / "photo.png").size == (64, 48)


def test_bad_file_among_good_ones(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ["a.png", "c d é.png"]:
        Image.fromarray(textured(30, 40)).save(src / name)
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (src / "empty.jpg").write_bytes(b"")
    (src / "tiny.png").write_bytes(b"")
    Image.new("RGB", (1, 1)).save(src / "tiny.png")
    r = unblur("deblur", src, "-o", tmp_path / "out")
    assert r.returncode == 1
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a.png", "c d é.png", "tiny.png"]
    failures = [line for line in r.stderr.splitlines() if line.startswith("unblur: failed:")]
    assert len(failures) == 2 and any("b.png" in f for f in failures) and any("empty.jpg: empty file" in f for f in failures)
    assert "2 of 5 failed" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["deblur", "nothing-here.png", "-o", "out"], "no such file"),
        (["deblur", "{photo}", "-o", "out", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["deblur", "{photo}", "-o", "out", "--model", "missing.safetensors"], "model file not found"),
        (["deblur", "{empty_dir}", "-o", "out"], "no images found"),
        (["train", "--set", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
    ],
)
def test_usage_errors_are_one_line(photo, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(photo=photo, empty_dir=tmp_path / "empty") for a in args]
    r = unblur(*args, cwd=tmp_path)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.startswith("unblur: error")]) == 1


def test_models_lists_the_default():
    r = unblur("models")
    assert r.returncode == 0 and "nafnet-real-world (default)" in r.stdout and "missing" not in r.stdout


def test_demo_writes_comparison(tmp_path):
    r = unblur("demo", "-o", tmp_path / "demo")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "demo" / "comparison.png").exists()
    assert "mean gain" in r.stdout
    again = unblur("demo", "-o", tmp_path / "demo")
    assert again.returncode == 2 and "--overwrite" in again.stderr + again.stdout


def test_deblurring_with_the_default_model_imports_nothing_from_training(photo, tmp_path):
    """Inference sits below training: `unblur deblur` loads and runs a model without the training package."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "unblur", "deblur", str(photo), "-o", str(tmp_path / "out"), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    assert "unblur.modelfile" in imported and "unblur.methods.regression" in imported  # the model was loaded
    assert not [m for m in imported if m == "unblur.train" or m.startswith("unblur.train.")]

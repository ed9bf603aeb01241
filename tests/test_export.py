"""`unblur export`: regression models as ONNX graphs that ONNX Runtime runs like PyTorch does."""

import json

import numpy as np
import pytest
import torch

from unblur.cli import main
from unblur.demo import SAMPLES
from unblur.io import read_image
from unblur.restore import image_tensor
from unblur.zoo import load_model

pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

def compare(graph, model: str, images: list[np.ndarray]) -> float:
    """The largest absolute difference between ONNX Runtime on ``graph`` and the PyTorch model in fp32 over
    ``images`` ((H, W, 3) in [0, 1]; one batch per size), after checking the graph's names and metadata."""
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["blurred"] and [o.name for o in session.get_outputs()] == ["restored"]
    net, meta = load_model(model, "cpu")
    props = {p.key: p.value for p in onnx.load(str(graph), load_external_data=False).metadata_props}
    assert json.loads(props["unblur"])["arch"] == meta["arch"]
    worst = 0.0
    for rgb in images:
        x = image_tensor(rgb)
        with torch.no_grad():
            reference = net(x).clamp(0, 1).numpy()
        ours = session.run(["restored"], {"blurred": x.numpy()})[0]
        assert ours.shape == reference.shape and ours.min() >= 0 and ours.max() <= 1
        worst = max(worst, float(np.abs(ours - reference).max()))
    return worst

def test_export_default_model_matches_pytorch(tmp_path, capsys):
    out = tmp_path / "nafnet-small.onnx"
    assert main(["export", "--model", "nafnet-small", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "nafnet-small (nafnet) -> " in said and "checked: ONNX Runtime matches PyTorch fp32" in said
    a, _ = read_image(SAMPLES / "rocket-blurred.png")
    assert compare(out, "nafnet-small", [a[:64, :96], a[10:87, 20:141], a[:16, :16]]) < 1e-4
    # a batch: two photos at once
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    b, _ = read_image(SAMPLES / "chelsea-blurred.png")
    batch = torch.cat([image_tensor(a[:50, :70]), image_tensor(b[:50, :70])]).numpy()
    both = session.run(["restored"], {"blurred": batch})[0]
    one = session.run(["restored"], {"blurred": batch[1:]})[0]
    assert both.shape == (2, 3, 50, 70) and np.abs(both[1:] - one).max() < 1e-5
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # nothing left beside it

def test_export_blurdm_and_overwrite(tmp_path):
    """The BlurDM method (the bundled nafnet-blurdm) exports whole, prior included; an existing file is
    replaced only with --overwrite."""
    out = tmp_path / "blurdm.onnx"
    out.write_bytes(b"an older export")
    assert main(["export", "--model", "nafnet-blurdm", "-o", str(out), "-q"]) == 2
    assert out.read_bytes() == b"an older export"
    assert main(["export", "--model", "nafnet-blurdm", "-o", str(out), "-q", "--overwrite"]) == 0
    a, _ = read_image(SAMPLES / "coffee-blurred.png")
    assert compare(out, "nafnet-blurdm", [a[:48, :64], a[5:62, 7:100]]) < 1e-4

@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "deblurdiff-small"], "is a diffusion model"),
        (["--model", "bd-diff-small"], "is a diffusion model"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "missing.safetensors"], "model file not found"),
        (["--opset", "13"], "--opset must be at least 18"),
        (["--opset", "999"], "--opset must be at most"),
    ],
)
def test_refusals_are_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "m.onnx"
    assert main(["export", *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("unblur: error:") and "\n" not in err
    assert list(tmp_path.iterdir()) == []

def test_refuses_existing_output_and_folders(tmp_path, capsys):
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"keep me")
    assert main(["export", "-o", str(existing)]) == 2
    assert "exists (use --overwrite" in capsys.readouterr().err and existing.read_bytes() == b"keep me"
    assert main(["export", "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def tiny_nafnet_file(path, seed: int) -> str:
    """A model file of a tiny NAFNet with seed-dependent random weights."""
    from unblur import nn as backbones
    from unblur.modelfile import save_model_file

    torch.manual_seed(seed)
    return str(save_model_file(path, backbones.build("nafnet", backbones.backbone_module("nafnet").TINY), "nafnet"))


def test_average_weights_script_writes_the_mean_of_two_model_files_and_refuses_other_networks(tmp_path, monkeypatch, capsys):
    """scripts/average_weights.py: the soup holds the tensor-wise mean; a file of another network is refused."""
    import runpy
    import sys
    from pathlib import Path

    from unblur import nn as backbones
    from unblur.modelfile import load_model_file, save_model_file

    tiny = backbones.backbone_module("nafnet").TINY
    files = [tiny_nafnet_file(tmp_path / f"m{seed}.safetensors", seed) for seed in (0, 1)]
    script = str(Path(__file__).parents[1] / "scripts" / "average_weights.py")
    soup = tmp_path / "soup.safetensors"
    monkeypatch.setattr(sys, "argv", [script, *files, "-o", str(soup)])
    runpy.run_path(script, run_name="__main__")
    a, b, mean = (load_model_file(p)[0].state_dict() for p in (*files, soup))
    assert a.keys() == mean.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(mean[k], (a[k] + b[k]) / 2) for k in a if a[k].is_floating_point())
    assert load_model_file(soup)[1]["averaged"] == files

    wider = save_model_file(tmp_path / "wide.safetensors", backbones.build("nafnet", {**tiny, "width": 16}), "nafnet")
    monkeypatch.setattr(sys, "argv", [script, files[0], str(wider), "-o", str(tmp_path / "bad.safetensors")])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(script, run_name="__main__")
    assert exit.value.code != 0 and "is not the same network" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()


def test_export_model_script_halves_and_replaces_a_file_only_when_asked(tmp_path, monkeypatch):
    """scripts/export_model.py: fp16 copy that loads back as the same network; an existing file is kept unless --overwrite."""
    import runpy
    import sys
    from pathlib import Path

    from unblur.modelfile import load_model_file

    src = tiny_nafnet_file(tmp_path / "run.safetensors", 0)
    dst = tmp_path / "shipped.safetensors"
    dst.write_bytes(b"the shipped file")
    script = str(Path(__file__).parents[1] / "scripts" / "export_model.py")
    monkeypatch.setattr(sys, "argv", [script, src, str(dst), "--half"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(script, run_name="__main__")
    assert "exists (pass --overwrite" in str(exit.value.code) and dst.read_bytes() == b"the shipped file"
    monkeypatch.setattr(sys, "argv", [script, src, str(dst), "--half", "--overwrite"])
    runpy.run_path(script, run_name="__main__")
    a, b = (load_model_file(p)[0].state_dict() for p in (src, dst))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-3) for k in a if a[k].is_floating_point())

"""Loaders for the standard layouts, on tiny fake trees made here."""

import numpy as np
import pytest
from conftest import textured
from PIL import Image

from unblur.data.paired import PairedImages, find_pairs, gopro_pairs, hide_pairs, realblur_pairs, unpaired_blurred


def img(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(textured(16, 20, seed)).save(path)


def test_gopro_layout(tmp_path):
    for scene in ["GOPR0384_11_00", "GOPR0385_11_01"]:
        for i in range(2):
            for kind in ["blur", "blur_gamma", "sharp"]:
                img(tmp_path / "test" / scene / kind / f"{i:06d}.png", seed=i)
    pairs = gopro_pairs(tmp_path)
    assert len(pairs) == 4 and pairs[0].name == "GOPR0384_11_00_000000"
    assert pairs[0].blurred.parent.name == "blur" and pairs[0].sharp.parent.name == "sharp"
    assert gopro_pairs(tmp_path, blur="blur_gamma")[0].blurred.parent.name == "blur_gamma"
    blurred, sharp = PairedImages(pairs)[1]
    assert blurred.shape == sharp.shape == (16, 20, 3)
    with pytest.raises(FileNotFoundError):
        gopro_pairs(tmp_path, split="train")


def test_hide_layout(tmp_path):
    for sub, names in {
        "test-close-ups": ["1fromGOPR0950.png"],
        "test-long-shot": ["3fromGOPR1101.png", "4fromGOPR1101.png"],
    }.items():
        for n in names:
            img(tmp_path / "test" / sub / n)
            img(tmp_path / "GT" / n)
    pairs = hide_pairs(tmp_path)
    assert [p.name for p in pairs] == [
        "test-close-ups_1fromGOPR0950",
        "test-long-shot_3fromGOPR1101",
        "test-long-shot_4fromGOPR1101",
    ]
    assert all(p.sharp.parent.name == "GT" for p in pairs)


def test_realblur_layout(tmp_path):
    base = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
    lines = []
    for scene in ["scene230", "scene231"]:
        img(tmp_path / base / scene / "gt" / "gt_1.png")
        img(tmp_path / base / scene / "blur" / "blur_1.png")
        lines.append(f"{base}/{scene}/gt/gt_1.png {base}/{scene}/blur/blur_1.png")
    (tmp_path / "RealBlur_J_test_list.txt").write_text("\n".join(lines) + "\n")
    pairs = realblur_pairs(tmp_path, "J", "test")
    assert len(pairs) == 2 and pairs[0].blurred.name == "blur_1.png" and pairs[0].sharp.name == "gt_1.png"
    assert pairs[0].name != pairs[1].name


def test_our_layout_with_kernels_and_unpaired(tmp_path):
    img(tmp_path / "blur" / "a.png")
    img(tmp_path / "sharp" / "a.png")
    (tmp_path / "kernel").mkdir()
    np.save(tmp_path / "kernel" / "a.npy", np.ones((3, 3), np.float32) / 9)
    (pair,) = find_pairs(tmp_path)
    assert pair.load_kernel().sum() == pytest.approx(1)
    img(tmp_path / "blur" / "orphan.png")
    with pytest.raises(FileNotFoundError, match="no sharp image named orphan"):
        find_pairs(tmp_path)
    assert [p.name for p in unpaired_blurred(tmp_path / "blur")] == ["a.png", "orphan.png"]


def test_synth_command_is_reproducible(tmp_path):
    from unblur.cli import main

    for i in range(2):
        img(tmp_path / "sharp" / f"p{i}.png", seed=i)
    for preset in ["uniform-kernel", "realistic"]:
        a, b = tmp_path / f"{preset}-a", tmp_path / f"{preset}-b"
        for out in (a, b):
            assert main(["synth", str(tmp_path / "sharp"), "-o", str(out), "--preset", preset, "--per-image", "2", "-q"]) == 0
        names = sorted(p.name for p in (a / "blur").iterdir())
        assert names == ["p0_0.png", "p0_1.png", "p1_0.png", "p1_1.png"]
        assert all((a / "blur" / n).read_bytes() == (b / "blur" / n).read_bytes() for n in names)
        assert (a / "kernel").exists() == (preset == "uniform-kernel")
        assert len((a / "meta.jsonl").read_text().splitlines()) == 4
    assert main(["synth", str(tmp_path / "sharp"), "-o", str(a), "-q"]) == 2  # an existing set is not overwritten


def test_validation_sets_in_memory(tmp_path, sharp_folder):
    """The two evaluation inputs the scripts share: a paired folder, and photos blurred whole by a preset."""
    from unblur.data.paired import load_pairs
    from unblur.data.synthetic import blurred_photos

    for sub in ("blur", "sharp"):
        (tmp_path / sub).mkdir()
        for i in range(3):
            Image.fromarray(textured(20, 30, i + (sub == "sharp"))).save(tmp_path / sub / f"p{i}.png")
    pairs = list(load_pairs(tmp_path, limit=2))
    assert [p[0] for p in pairs] == ["p0", "p1"] and pairs[0][1].shape == pairs[0][2].shape == (20, 30, 3)
    a = list(blurred_photos(sharp_folder, "realistic", seed=3, crop=40))
    b = list(blurred_photos(sharp_folder, "realistic", seed=3, crop=40))
    assert len(a) == 4 and all(x[1].shape == (40, 40, 3) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][1], next(blurred_photos(sharp_folder, "realistic", seed=4, crop=40))[1])

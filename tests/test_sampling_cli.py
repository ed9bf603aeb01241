"""`unblur deblur` and `unblur bench` with the diffusion models' sampling options, on real files with the bundled
deblurdiff-small and bd-diff-small: the mean and the uncertainty of K draws, anchored sampling (--strength,
--start), and bench rows that name them."""

import json

import numpy as np
import pytest

pytest.importorskip("diffusers")

from unblur.cli import main
from unblur.io import read_image
from unblur.restore import UNCERTAINTY_WHITE, RunningStats, make_restorer, split_sampling, uncertainty_picture

SMALL = ["--model", "deblurdiff-small", "--steps", "2", "-q"]


@pytest.mark.parametrize("model", ["deblurdiff-small", "bd-diff-small"])
def test_mean_and_uncertainty_of_k_draws(photo, tmp_path, model):
    """--samples 3 --mean writes NAME.png, the per-pixel mean of the three draws (seeds S..S+2), and --uncertainty
    NAME-uncertainty.png, their standard deviation as grey (white = 0.1); nothing else. The same for both
    diffusion methods: the draws come from the shared latent code."""
    small = ["--model", model, "--steps", "2", "-q"]
    assert main(["deblur", str(photo), "-o", str(tmp_path / "each"), *small, "--samples", "3", "--seed", "4"]) == 0
    draws = np.stack([read_image(tmp_path / "each" / f"{photo.stem}-{k}.png")[0] for k in (1, 2, 3)]).astype(np.float64)
    out = tmp_path / "mean"
    assert main(["deblur", str(photo), "-o", str(out), *small, "--samples", "3", "--seed", "4", "--mean", "--uncertainty"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{photo.stem}-uncertainty.png", f"{photo.stem}.png"]
    mean, _ = read_image(out / f"{photo.stem}.png")
    assert mean.shape == draws.shape[1:] and np.abs(mean - draws.mean(0)).max() <= 1.5 / 255  # the draws were rounded to 8 bits
    picture, _ = read_image(out / f"{photo.stem}-uncertainty.png")
    assert np.array_equal(picture[..., 0], picture[..., 1]) and np.array_equal(picture[..., 0], picture[..., 2])  # grey
    expected = np.clip(np.sqrt((draws.std(0, ddof=1) ** 2).mean(2)) / UNCERTAINTY_WHITE, 0, 1)
    assert np.abs(picture[..., 0] - expected).mean() < 0.02 and picture.max() > 0.05
    # the same again is refused without --overwrite, accepted with it
    args = ["deblur", str(photo), "-o", str(out), *small, "--samples", "3", "--seed", "4", "--mean"]
    assert main(args) == 1 and main([*args, "--overwrite"]) == 0
    # uncertainty beside the K draws themselves
    both = tmp_path / "both"
    assert main(["deblur", str(photo), "-o", str(both), *small, "--samples", "2", "--uncertainty"]) == 0
    assert sorted(p.name for p in both.iterdir()) == [f"{photo.stem}-{k}.png" for k in (1, 2)] + [f"{photo.stem}-uncertainty.png"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mean"], "--mean needs --samples K with K of at least 2"),
        (["--samples", "1", "--uncertainty"], "--uncertainty needs --samples K"),
        (["--strength", "0"], "strength must be in (0, 1]"),
        (["--strength", "1.5"], "strength must be in (0, 1]"),
        (["--strength", "0.5", "--start", "sharp"], "start must be one of zs, blurred"),
    ],
)
def test_bad_sampling_options_are_one_line_errors(photo, tmp_path, capsys, extra, message):
    assert main(["deblur", str(photo), "-o", str(tmp_path / "o"), *SMALL, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_sampling_options_need_a_model_that_takes_them(photo, tmp_path, capsys):
    assert main(["deblur", str(photo), "-o", str(tmp_path / "o"), "--samples", "2", "--mean", "-q"]) == 2
    assert "for diffusion models" in capsys.readouterr().err
    assert main(["deblur", str(photo), "-o", str(tmp_path / "o"), "--strength", "0.5", "-q"]) == 2
    assert "options of diffusion models" in capsys.readouterr().err
    # BD-Diff starts from its blurred latent only (it has no z_s)
    args = ["deblur", str(photo), "-o", str(tmp_path / "b"), "--model", "bd-diff-small", "--steps", "2", "-q"]
    assert main([*args, "--strength", "0.5", "--start", "zs"]) == 2
    assert "start must be one of blurred" in capsys.readouterr().err
    assert main([*args, "--strength", "0.5"]) == 0


def test_strength_from_the_cli(photo, tmp_path):
    """The model's own setting (deblurdiff-small: strength 0.1 from z_s) is what the options say, file for file;
    sampling from noise (--strength 1) and a start from the blurred latent give other results, the same for a seed."""

    def run(name, *extra):
        assert main(["deblur", str(photo), "-o", str(tmp_path / name), *SMALL, "--seed", "2", *extra]) == 0
        return read_image(tmp_path / name / f"{photo.stem}.png")[0]

    today, same = run("today"), run("same", "--strength", "0.1", "--start", "zs")
    assert np.array_equal(today, same)
    noise, again = run("one", "--strength", "1"), run("one2", "--strength", "1")
    blurred = run("b", "--strength", "0.5", "--start", "blurred")
    assert np.array_equal(noise, again) and not np.array_equal(noise, today) and not np.array_equal(blurred, today)


def test_bench_rows_name_steps_strength_and_start(tmp_path):
    from test_bench import make_set

    settings = {"steps": 10, "strength": 0.3, "start": "blurred"}
    assert split_sampling("deblurdiff-small@10s0.3-blurred") == ("deblurdiff-small", settings)
    assert split_sampling("deblurdiff-small@s.5") == ("deblurdiff-small", {"strength": 0.5})
    assert split_sampling("nafnet-small") == ("nafnet-small", {})
    with pytest.raises(ValueError, match="after @ come sampling steps"):
        split_sampling("deblurdiff-small@ten")
    restorer = make_restorer("deblurdiff-small@3s0.5-blurred", device="cpu")
    assert restorer.steps == 3 and restorer.anchoring == {"strength": 0.5, "start": "blurred"}

    make_set(tmp_path / "set", n=1)
    rows = "deblurdiff-small@1,deblurdiff-small@2s0.5-blurred"
    out = tmp_path / "report"
    assert main(["bench", "--data", str(tmp_path / "set"), "--models", rows, "--out", str(out), "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(rows.split(",")) <= set(results["rows"])
    assert "| deblurdiff-small@2s0.5-blurred |" in (out / "report.md").read_text()
    bad = "deblurdiff-small@1s0.5-sharp"
    assert main(["bench", "--data", str(tmp_path / "set"), "--models", bad, "--out", str(out), "-q"]) == 2


def test_running_stats_and_the_uncertainty_scale():
    rng = np.random.default_rng(0)
    images = rng.random((5, 4, 6, 3)).astype(np.float32)
    stats = RunningStats()
    for image in images:
        stats.add(image)
    assert np.allclose(stats.mean, images.mean(0), atol=1e-6) and np.allclose(stats.std, images.std(0, ddof=1), atol=1e-6)
    std = np.zeros((2, 2, 3), np.float32)
    std[0, 0], std[0, 1], std[1, 0] = 0.05, 0.1, [0.3, 0, 0]
    picture = uncertainty_picture(std)
    assert picture.shape == (2, 2, 3) and np.allclose(picture[..., 0], [[0.5, 1.0], [1.0, 0.0]])

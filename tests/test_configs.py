"""Every shipped config loads and builds its model (and each stage of a staged one)."""

from pathlib import Path

import pytest

import unblur
from unblur import methods, nn as backbones
from unblur.train.config import load_config
from unblur.train.stages import stage_configs

CONFIGS = sorted((Path(unblur.__file__).parent / "configs").rglob("*.yaml"))


def test_every_backbone_has_a_config():
    archs = {load_config(path)["model"]["arch"] for path in CONFIGS}
    assert set(backbones.BACKBONES) <= archs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_config_builds_its_model(path, request):
    cfg = load_config(path)
    for c in stage_configs(cfg) if cfg["stages"] else [cfg]:
        # "vae" names an earlier run's output (the VAE stage), absent in a fresh checkout: a random VAE stands in
        args = {k: v for k, v in c["model"].items() if k not in ("arch", "vae")}
        if "sd" in args:  # the user's Stable Diffusion folder: the tests' tiny one stands in
            args["sd"] = str(request.getfixturevalue("tiny_sd")[0])
        model = methods.build(c["model"]["arch"], args)
        assert sum(p.numel() for p in model.parameters()) > 0
        # data folders are read below the data root (data.cache below the repository), never relative to the current folder
        assert not any(str(c["data"][key] or "").startswith(("..", "/")) for key in ("train", "val", "cache", "target"))

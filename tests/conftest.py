"""Shared fixtures: small real images on disk, made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like uint8 RGB image: smooth shading plus edges and texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.4 * np.sin(6 * x + c) * np.cos(4 * y - c) for c in (0, 1, 2)], axis=2)
    blocks = (np.floor(x * 8) + np.floor(y * 8)) % 2
    img = 0.7 * base + 0.2 * blocks[..., None] + 0.1 * rng.random((h, w, 1))
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(textured(48, 64)).save(path)
    return path


#: a CPU-sized configuration of every registered method (tests/test_methods.py holds every method to its contract)
TINY_NAFNET = {"width": 8, "enc_blocks": [1, 1], "middle_blocks": 1, "dec_blocks": [1, 1]}
TINY_METHODS = {
    "blurdm": dict(
        backbone="nafnet", backbone_config=TINY_NAFNET, encoder_channels=8, encoder_blocks=1, dim=16, estimator_hidden=32
    ),
    "small-vae": dict(widths=[8, 16]),
    "small-prior": dict(  # strength 1: the contract test counts every sampling step
        latent_channels=4, vae_widths=[8, 16], unet_widths=[8, 16], cross_attention_dim=8, val_steps=2, strength=1.0
    ),
    "deblurdiff": dict(sd=None, kernel_size=3, lkpn_width=8, val_steps=2),  # sd: the tiny_sd fixture's folder
    "deblurdiff-small": dict(
        vae_widths=[8, 16], unet_widths=[8, 16], cross_attention_dim=8, kernel_size=3, lkpn_width=8, val_steps=2
    ),
    "bd-diff-small": dict(
        vae_widths=[8, 16],
        unet_widths=[16, 32],
        unet_heads=4,
        token_width=32,
        structure_queries=8,
        blur_queries=4,
        qformer_layers=1,
        qformer_heads=2,
        val_steps=2,
    ),
}


def engine_sets(folder, steps: int, *overrides: str) -> list[str]:
    """``key=value`` settings of a training run sized for a CPU test: ``steps`` steps on the CPU, 32-px crops of
    ``folder``'s photos in batches of 4 (no data workers, no TensorBoard), validation on 32-px centre crops of the
    same photos, and a tiny NAFNet; ``overrides`` on top (a ``model.arch`` among them replaces the model)."""
    base = [f"data.train={folder}", f"data.val={folder}", "data.crop=32", "data.batch=4", "data.workers=0"]
    base += ["data.val_crop=32", "data.val_images=4", f"optim.steps={steps}", "optim.warmup=2"]
    base += ["train.device=cpu", "train.tensorboard=false"]
    base += [f"model.{k}={v}" for k, v in TINY_NAFNET.items()]
    return [*base, *overrides]


def engine_config(folder, steps: int, *overrides: str) -> dict:
    """The config of :func:`engine_sets` (what ``unblur train --set ...`` would run)."""
    from unblur.train.config import load_config

    return load_config(None, engine_sets(folder, steps, *overrides))


@pytest.fixture(scope="session")
def sharp_folder(tmp_path_factory) -> Path:
    """A folder of a few sharp 'photos' for training and validation."""
    folder = tmp_path_factory.mktemp("sharp")
    for i in range(4):
        Image.fromarray(textured(96, 112, seed=i)).save(folder / f"img{i}.jpg", quality=95)
    return folder


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(w: int = 50_000, h: int = 50_000) -> bytes:
    """A valid PNG header announcing w x h pixels, with almost no data behind it."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise: 40x24 stored -> 24x40 shown
    return _encode(Image.fromarray(textured(24, 40)), "JPEG", exif=exif, quality=95)


def _png16() -> bytes:
    import cv2

    return cv2.imencode(".png", textured(24, 32).astype(np.uint16) * 257)[1].tobytes()


def _animated() -> bytes:
    frames = [Image.fromarray(textured(20, 30, seed=s)) for s in range(3)]
    import io

    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


#: Inputs real users send. name -> (file name, bytes maker, expected): expected is either
#: ("ok", (width, height), PNG mode of the result) or ("error", text in the one-line message).
BAD_INPUTS = {
    "zero-byte": ("empty.png", lambda: b"", ("error", "empty file")),
    "truncated": ("cut.png", lambda: _png_bytes(textured(64, 64))[:-80], ("error", "cannot decode")),
    "not-an-image": ("notes.png", lambda: b"these are my holiday notes, not a picture", ("error", "not an image")),
    "16-bit": ("deep.png", _png16, ("ok", (32, 24), "RGB16")),
    "greyscale": ("grey.png", lambda: _png_bytes(textured(24, 32)[..., 0]), ("ok", (32, 24), "L")),
    "rgba": ("alpha.png", lambda: _encode(Image.fromarray(textured(24, 32)).convert("RGBA"), "PNG"), ("ok", (32, 24), "RGBA")),
    "cmyk-jpeg": (
        "print.jpg",
        lambda: _encode(Image.fromarray(textured(24, 32)).convert("CMYK"), "JPEG"),
        ("ok", (32, 24), "RGB"),
    ),
    "exif-rotated": ("rotated.jpg", _exif_rotated, ("ok", (24, 40), "RGB")),
    "bomb": ("bomb.png", bomb_png, ("error", "megapixels")),
    "1x1": ("dot.png", lambda: _png_bytes(np.full((1, 1, 3), 128, np.uint8)), ("ok", (1, 1), "RGB")),
    "animated-gif": ("anim.gif", _animated, ("ok", (30, 20), "RGB")),
    "unicode-name": ("my phötö 日本.png", lambda: _png_bytes(textured(20, 24)), ("ok", (24, 20), "RGB")),
}


def result_mode(data: bytes) -> str:
    """PNG mode as Pillow sees it, with 16-bit colour (which Pillow reduces) named RGB16."""
    import io

    import cv2

    img = Image.open(io.BytesIO(data))
    if img.mode == "RGB" and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).dtype == np.uint16:
        return "RGB16"
    return img.mode


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


from contextlib import contextmanager


@contextmanager
def run_server(models=("nafnet-small",), tile=None, **limits):
    """A real uvicorn server with ``models`` (default: the default model) on a free loopback port, in a thread
    (``tile``: the restorers' largest tile, None: their default)."""
    import threading
    import time

    import httpx
    import uvicorn

    from unblur.serve.app import Limits, create_app

    settings = {"max_upload_mb": 2.0, "max_megapixels": 4.0, "workers": 1, "queue": 4, "timeout_s": 120.0, **limits}
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(list(models), Limits(**settings), device="cpu", tile=tile), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/api/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server():
    with run_server() as url:
        yield url


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A Stable-Diffusion-shaped model at toy size (random weights, v-prediction), saved as diffusers saves SD 2.x."""
    pytest.importorskip("diffusers")
    import torch

    from unblur.methods.small_sd import build_small_sd

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-sd")
    sd = build_small_sd(
        vae_widths=[8, 16], unet_widths=[8, 16], cross_attention_dim=8, attention_head_dim=2, prediction_type="v_prediction"
    )
    sd.unet.save_pretrained(root / "unet")
    sd.vae.save_pretrained(root / "vae")
    # the noise schedule as a diffusers folder holds it (SD's betas, v-prediction), written by diffusers itself
    diffusers = pytest.importorskip("diffusers")
    diffusers.DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction"
    ).save_pretrained(root / "scheduler")
    return root, sd.unet, sd.vae


@pytest.fixture(scope="session")
def tiny_sd_text(tiny_sd, tmp_path_factory):
    """:func:`tiny_sd` with a tokenizer and a text encoder, laid out as SD 2.x's diffusers folders hold them:
    ``tokenizer/`` (CLIP's BPE files, "!" as the padding token, 77 tokens) and ``text_encoder/`` (a toy
    ``CLIPTextModel`` as wide as the UNet's cross-attention). Returns (folder, text encoder)."""
    import json
    import shutil

    import torch

    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("tiny-sd-text") / "sd"
    shutil.copytree(tiny_sd[0], root)
    vocab = {chr(c): i for i, c in enumerate(range(ord("!"), ord("~") + 1))}  # printable ASCII; "!" is 0
    vocab.update({f"{k}</w>": len(vocab) + i for i, k in enumerate(list(vocab))})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "!"}
    tokenizer = root / "tokenizer"
    tokenizer.mkdir()
    (tokenizer / "vocab.json").write_text(json.dumps(vocab))
    (tokenizer / "merges.txt").write_text("#version: 0.2\n")
    (tokenizer / "special_tokens_map.json").write_text(json.dumps(special))
    (tokenizer / "tokenizer_config.json").write_text(json.dumps({**special, "model_max_length": 77, "do_lower_case": True}))
    torch.manual_seed(1)
    config = transformers.CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=tiny_sd[1].config.cross_attention_dim,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act="gelu",
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=0,
    )
    encoder = transformers.CLIPTextModel(config).eval()
    encoder.save_pretrained(root / "text_encoder")
    return root, encoder

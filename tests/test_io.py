import struct
import zlib

import numpy as np
import pytest
from conftest import textured
from PIL import Image, ImageOps

from unblur.io import ImageError, _orient, list_images, read_image, write_image


def test_roundtrip_8bit(tmp_path):
    src = textured(20, 30)
    Image.fromarray(src).save(tmp_path / "a.png")
    rgb, info = read_image(tmp_path / "a.png")
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.float32 and info.bits == 8 and not info.grey
    write_image(tmp_path / "b.png", rgb, info)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), src)


def test_16bit_colour_kept(tmp_path):
    import cv2

    src = (np.random.default_rng(0).random((10, 12, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), src[..., ::-1])
    rgb, info = read_image(tmp_path / "a.png")
    assert info.bits == 16
    assert np.abs(rgb * 65535 - src).max() < 0.01  # not reduced to 8 bits
    write_image(tmp_path / "b.png", rgb, info)
    back = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16 and np.array_equal(back, src)


def test_16bit_grey(tmp_path):
    src = (np.arange(200, dtype=np.uint16) * 300).reshape(10, 20)
    Image.fromarray(src).save(tmp_path / "g.png")
    rgb, info = read_image(tmp_path / "g.png")
    assert info.bits == 16 and info.grey and np.allclose(rgb[..., 0] * 65535, src, atol=0.01)
    write_image(tmp_path / "o.png", rgb, info)
    out = Image.open(tmp_path / "o.png")
    assert np.array_equal(np.asarray(out).astype(np.uint16), src)


def test_grey_and_alpha_kept(tmp_path):
    Image.fromarray(textured(8, 9)[..., 0]).save(tmp_path / "l.png")
    rgb, info = read_image(tmp_path / "l.png")
    assert info.grey and rgb.shape == (8, 9, 3)
    write_image(tmp_path / "l-out.png", rgb, info)
    assert Image.open(tmp_path / "l-out.png").mode == "L"

    rgba = np.dstack([textured(8, 9), np.linspace(0, 255, 72).reshape(8, 9).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb, info = read_image(tmp_path / "a.png")
    write_image(tmp_path / "a-out.png", rgb, info)
    out = Image.open(tmp_path / "a-out.png")
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out), rgba)


def test_cmyk_jpeg(tmp_path):
    src = Image.fromarray(textured(16, 16))
    src.convert("CMYK").save(tmp_path / "c.jpg", quality=98)
    rgb, _ = read_image(tmp_path / "c.jpg")
    assert rgb.shape == (16, 16, 3)
    assert np.abs(rgb * 255 - np.asarray(src, np.float32)).mean() < 12


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    src = Image.fromarray(textured(6, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    src.save(tmp_path / "r.jpg", exif=exif, quality=100)
    rgb, _ = read_image(tmp_path / "r.jpg")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "r.jpg")), np.float32) / 255
    assert rgb.shape == expected.shape and np.allclose(rgb, expected)
    # our array path for 16-bit files must agree with Pillow's too
    arr = np.arange(60).reshape(6, 10)
    ref = np.asarray(ImageOps.exif_transpose(_with_orientation(arr, orientation)))
    assert np.array_equal(_orient(arr, orientation), ref)


def _with_orientation(arr, orientation):
    img = Image.fromarray(arr.astype(np.uint8))
    exif = img.getexif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    img.getexif()[0x0112] = orientation
    return img


def _png_header_only(path, w, h):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("hello, I am not a picture"), "not an image"),
        (lambda p: p.write_bytes(_png_bytes()[:-60]), "cannot decode"),
        (lambda p: _png_header_only(p, 50_000, 50_000), "above the limit of 100 megapixels"),
    ],
    ids=["zero-byte", "not-an-image", "truncated", "bomb"],
)
def test_bad_files_give_one_line_errors(tmp_path, make, message):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert message in str(err.value) and "\n" not in str(err.value) and "bad.png" in str(err.value)


def _png_bytes():
    import io

    buf = io.BytesIO()
    Image.fromarray(textured(64, 64)).save(buf, format="PNG")
    return buf.getvalue()


def test_tiny_and_animated(tmp_path):
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "one.png")
    rgb, _ = read_image(tmp_path / "one.png")
    assert rgb.shape == (1, 1, 3)
    frames = [Image.new("RGB", (5, 4), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    rgb, _ = read_image(tmp_path / "anim.gif")
    assert rgb.shape == (4, 5, 3) and rgb[0, 0, 0] > 0.9  # the first frame


def test_write_never_overwrites_silently(tmp_path):
    target = tmp_path / "x.png"
    write_image(target, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ImageError, match="exists"):
        write_image(target, np.ones((2, 2, 3), np.float32))
    write_image(target, np.ones((2, 2, 3), np.float32), overwrite=True)
    assert np.asarray(Image.open(target)).min() == 255
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary files left behind


def test_list_images_expands_folders(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ["b.png", "a.jpg", "notes.txt"]:
        (tmp_path / "d" / name).write_bytes(b"x")
    found = list_images([tmp_path / "d", tmp_path / "explicit.weird"])
    assert [p.name for p in found] == ["a.jpg", "b.png", "explicit.weird"]

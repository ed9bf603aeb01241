"""Every input a real user may send, through the CLI and through the HTTP API."""

import io
import subprocess
import sys

import pytest
from conftest import BAD_INPUTS, result_mode
from PIL import Image


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_cli(case, tmp_path):
    filename, make, expected = BAD_INPUTS[case]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / filename).write_bytes(make())
    r = subprocess.run(
        [sys.executable, "-m", "unblur", "deblur", str(tmp_path / "in" / filename), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in r.stderr
    if expected[0] == "ok":
        assert r.returncode == 0, r.stderr
        data = (tmp_path / "out" / (filename.rsplit(".", 1)[0] + ".png")).read_bytes()
        assert Image.open(io.BytesIO(data)).size == expected[1] and result_mode(data) == expected[2]
    else:
        assert r.returncode == 1
        failed = [line for line in r.stderr.splitlines() if line.startswith("unblur: failed:")]
        assert len(failed) == 1 and expected[1] in failed[0], r.stderr
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_http(case, server):
    import httpx

    filename, make, expected = BAD_INPUTS[case]
    r = httpx.post(f"{server}/api/deblur", params={"name": filename}, content=make(), timeout=120)
    if expected[0] == "ok":
        assert r.status_code == 200, r.text
        assert Image.open(io.BytesIO(r.content)).size == expected[1] and result_mode(r.content) == expected[2]
        assert r.headers["x-image-size"] == "{}x{}".format(*expected[1])
    else:
        assert r.status_code == 400
        message = r.json()["error"]
        assert expected[1] in message and "\n" not in message and filename in message
    assert httpx.get(f"{server}/api/health").json()["ok"]  # the server is still up

"""`unblur serve` on loopback: API behaviour, limits, and a real headless browser."""

import io
import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from conftest import textured
from PIL import Image


def test_models_and_page(server):
    info = httpx.get(f"{server}/api/models").json()
    assert info["default"] == "nafnet-small" and info["models"] == ["nafnet-small"] and info["generative"] == []
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "<title>unblur</title>" in page.text
    # everything the page loads comes from this server (works offline, no CDN)
    assert "http" not in page.text.replace("http-equiv", "")
    assert httpx.get(f"{server}/static/app.js").status_code == 200


@pytest.mark.parametrize(
    "path", ["/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fetc%2fpasswd"]
)
def test_no_path_traversal(server, path):
    r = httpx.get(server + path)
    assert r.status_code == 404 and "root:" not in r.text


def test_unknown_model_and_oversized_upload(server):
    r = httpx.post(f"{server}/api/deblur", params={"model": "../../etc"}, content=b"x")
    assert r.status_code == 400 and "unknown model" in r.json()["error"]
    big = b"\0" * (3 * 2**20)  # the test server allows 2 MB
    r = httpx.post(f"{server}/api/deblur", params={"name": "big.png"}, content=big)
    assert r.status_code == 413 and "larger than 2 MB" in r.json()["error"]


def test_busy_answers_when_the_queue_is_full(tmp_path):
    """One worker, a queue of 2, twelve simultaneous uploads: each succeeds or hears 'busy, retry'."""
    from conftest import run_server

    data = io.BytesIO()
    Image.fromarray(textured(320, 320)).save(data, format="PNG")
    with run_server(workers=1, queue=2) as url:
        results = [None] * 12

        def post(i):
            results[i] = httpx.post(f"{url}/api/deblur", params={"name": f"{i}.png"}, content=data.getvalue(), timeout=120)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = [r.status_code for r in results]
        assert set(codes) <= {200, 503} and codes.count(200) >= 1 and codes.count(503) >= 1, codes
        assert all("busy" in r.json()["error"] and r.headers["retry-after"] for r in results if r.status_code == 503)
        assert httpx.get(f"{url}/api/health").json() == {"ok": True, "busy": 0, "waiting": 0}


def test_diffusion_models_take_steps_and_a_seed():
    """The API passes steps and seed to a diffusion model (the bundled deblurdiff-small): the same seed gives the
    same PNG, another seed another one; a deterministic model and bad numbers get a one-line 400."""
    pytest.importorskip("diffusers")
    from conftest import run_server

    data = io.BytesIO()
    Image.fromarray(textured(32, 48)).save(data, format="PNG")
    with run_server(models=("nafnet-small", "deblurdiff-small")) as url:
        assert httpx.get(f"{url}/api/models").json()["generative"] == ["deblurdiff-small"]

        def post(timeout=120, **params):
            return httpx.post(f"{url}/api/deblur", params={"name": "a.png", **params}, content=data.getvalue(), timeout=timeout)

        a, b = post(model="deblurdiff-small", steps=2, seed=3), post(model="deblurdiff-small", steps=2, seed=3)
        c = post(model="deblurdiff-small", steps=2, seed=4)
        assert a.status_code == 200 and a.content == b.content and a.content != c.content
        assert Image.open(io.BytesIO(a.content)).size == (48, 32)
        for params, message in [
            ({"model": "nafnet-small", "seed": 1}, "options of diffusion models"),
            ({"model": "deblurdiff-small", "steps": 0}, "steps must be a whole number from 1 to 200"),
            ({"model": "deblurdiff-small", "seed": "-1"}, "seed must be a whole number"),
            ({"model": "deblurdiff-small", "steps": "2.5"}, "steps must be"),
        ]:
            r = post(**params)
            assert r.status_code == 400 and message in r.json()["error"] and "\n" not in r.json()["error"], params


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("UNBLUR_REQUIRE_BROWSER"), reason="Debian chromium not installed")
def test_browser_upload_compare_download(tmp_path):
    from conftest import run_server
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "blurry photo.png"
    Image.fromarray(textured(90, 120)).save(photo)
    artifacts = Path(os.environ.get("UNBLUR_TEST_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with run_server(models=("nafnet-small", "deblurdiff-small")) as server, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(accept_downloads=True)
        page.goto(server + "/")
        page.wait_for_selector("#model option", state="attached")
        page.set_input_files("#file", str(photo))
        # a diffusion model shows its steps and seed, and the page sends them
        assert not page.is_visible("#steps")
        page.select_option("#model", "deblurdiff-small")
        page.fill("#steps", "2")
        page.fill("#seed", "5")
        with page.expect_request("**/api/deblur?*") as request:
            page.click("#go")
        assert "steps=2" in request.value.url and "seed=5" in request.value.url
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Done in')", timeout=60_000)
        page.select_option("#model", "nafnet-small")
        assert not page.is_visible("#steps")
        first = page.get_attribute("#after", "src")
        with page.expect_request("**/api/deblur?*") as request:
            page.click("#go")
        assert "steps" not in request.value.url and "seed" not in request.value.url
        page.wait_for_function(
            "([img, first]) => img.src !== first && img.naturalWidth > 0",
            arg=[page.query_selector("#after"), first],
            timeout=60_000,
        )
        size = page.evaluate("[document.getElementById('after').naturalWidth, document.getElementById('after').naturalHeight]")
        assert size == [120, 90]
        assert "Done in" in page.inner_text("#status")
        page.fill("#slider", "20")
        page.screenshot(path=str(artifacts / "serve.png"), full_page=True)
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        browser.close()
    assert saved.name == "blurry photo-unblurred.png"
    assert Image.open(saved).size == (120, 90)

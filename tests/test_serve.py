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
    assert info["speed"] == {"nafnet-small": "fast"}
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


def jpeg(h: int, w: int) -> bytes:
    data = io.BytesIO()
    Image.fromarray(textured(h, w)).save(data, format="JPEG", quality=90)
    return data.getvalue()


def tiles(shape: tuple[int, int], tile: int) -> int:
    """How many tiles the server's restorers (``tile``, their default overlap) cut an (H, W) photo into."""
    import inspect

    from unblur.restore import Restorer
    from unblur.tiling import count_tiles

    return count_tiles(shape, tile, inspect.signature(Restorer).parameters["overlap"].default)


def test_progress_follows_the_tiles_to_the_end():
    """A multi-tile photo sent with a job id: /api/progress reports the Restorer's tile count as total and done
    counts that only grow, and ends at done == total, state done (and stays readable for a while after)."""
    from conftest import run_server

    total = tiles((240, 320), 128)
    assert total > 1
    with run_server(tile=128) as url:
        result, seen = {}, []
        post = threading.Thread(
            target=lambda: result.update(
                r=httpx.post(f"{url}/api/deblur", params={"name": "a.jpg", "job": "job-1_a"}, content=jpeg(240, 320), timeout=120)
            )
        )
        post.start()
        while post.is_alive():
            r = httpx.get(f"{url}/api/progress", params={"job": "job-1_a"})
            if r.status_code == 200:
                seen.append(r.json())
            else:  # before the server has the upload, the job is not known yet
                assert r.status_code == 404 and "no job 'job-1_a'" in r.json()["error"]
        post.join()
        assert result["r"].status_code == 200 and result["r"].headers["X-Passes"] == str(total)
        final = httpx.get(f"{url}/api/progress", params={"job": "job-1_a"}).json()
        assert final == {"done": total, "total": total, "state": "done"}
        running = [p for p in seen if p["total"]]
        assert all(p["total"] == total for p in running), seen
        assert [p["done"] for p in running] == sorted(p["done"] for p in running), seen
        # the same id may be used again once its job has finished
        again = httpx.post(f"{url}/api/deblur", params={"name": "b.jpg", "job": "job-1_a"}, content=jpeg(40, 50), timeout=120)
        assert again.status_code == 200 and again.headers["X-Passes"] == "1"
        assert httpx.get(f"{url}/api/progress", params={"job": "job-1_a"}).json() == {"done": 1, "total": 1, "state": "done"}


@pytest.mark.parametrize("job", ["../../etc/passwd", "a" * 65, "a b", "ünï", "x%00y", ""])
def test_bad_job_ids_are_refused_in_one_line(server, job):
    for r in (
        httpx.get(f"{server}/api/progress", params={"job": job}),
        *([httpx.post(f"{server}/api/deblur", params={"job": job}, content=jpeg(20, 20))] if job else []),
    ):
        error = r.json()["error"]
        assert r.status_code == 400 and "job must be 1 to 64 letters" in error and "\n" not in error


def test_unknown_job_is_404(server):
    r = httpx.get(f"{server}/api/progress", params={"job": "never-sent"})
    assert r.status_code == 404 and r.json() == {"error": "no job 'never-sent': not started yet, or finished more than 60 s ago"}


def test_job_table_is_bounded():
    """Finished jobs are forgotten after keep_s, a running id cannot be taken twice, and at most cap jobs are held
    (the oldest finished going first)."""
    import time

    from unblur.serve.app import Jobs

    jobs = Jobs(cap=3, keep_s=0.2)
    a = jobs.start("a")
    assert jobs.start("a") is None  # still running
    jobs.finish(a, ok=True)
    b, c = jobs.start("b"), jobs.start("c")
    jobs.start("d")  # full: the finished job ('a') goes first
    assert jobs.get("a") is None and jobs.get("b") == {"done": 0, "total": 0, "state": "queued"} and len(jobs) == 3
    jobs.start("e")  # none finished: the oldest goes
    assert jobs.get("b") is None and len(jobs) == 3
    c.update(3, 7)
    jobs.finish(c, ok=False)
    assert jobs.get("c") == {"done": 3, "total": 7, "state": "failed"}
    time.sleep(0.3)
    assert jobs.get("c") is None and len(jobs) == 2
    assert jobs.start("c") is not None


def test_serve_offers_every_bundled_model_with_its_speed():
    """`unblur serve` without --models offers every bundled model, the default first; the page's labels come from
    each file's metadata (diffusion models are slow)."""
    import subprocess
    import sys
    import time

    from conftest import free_port

    from unblur.methods import method_class
    from unblur.modelfile import read_model_meta
    from unblur.zoo import DEFAULT, MODELS

    pytest.importorskip("diffusers")  # without it the diffusion models are left out (and the command says so)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "unblur", "serve", "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(600):
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=1).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.05)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert info["models"][0] == info["default"] == DEFAULT
    assert sorted(info["models"]) == sorted(MODELS) and "not offering" not in out
    for name in MODELS:
        slow = method_class(read_model_meta(MODELS[name].path)["arch"]).generative
        assert info["speed"][name] == ("slow (diffusion)" if slow else "fast"), name
    assert info["speed"]["deblurdiff-small"] == "slow (diffusion)" and info["speed"]["nafnet-small"] == "fast"
    assert sorted(info["generative"]) == ["bd-diff-small", "deblurdiff-small"]


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


def test_diffusion_models_return_the_mean_of_k_samples():
    """samples=K&mean=1: one PNG, the per-pixel mean of the draws for seeds S..S+K-1; the job's progress counts the
    sampling steps of all K draws, to the end; K > 1 without mean=1, too many samples, a regression model: 400."""
    pytest.importorskip("diffusers")
    import numpy as np
    from conftest import run_server

    data = io.BytesIO()
    Image.fromarray(textured(32, 48)).save(data, format="PNG")
    with run_server(models=("nafnet-small", "deblurdiff-small")) as url:

        def post(**params):
            query = {"name": "a.png", "model": "deblurdiff-small", **params}
            r = httpx.post(f"{url}/api/deblur", params=query, content=data.getvalue(), timeout=120)
            return r, (np.asarray(Image.open(io.BytesIO(r.content)), np.float64) / 255 if r.status_code == 200 else None)

        draws = [post(steps=2, seed=seed)[1] for seed in (3, 4, 5)]
        r, mean = post(steps=2, seed=3, samples=3, mean=1, job="mean-1")
        assert r.status_code == 200 and np.abs(mean - np.mean(draws, 0)).max() <= 1.5 / 255
        # deblurdiff-small runs the last tenth of its steps (strength 0.1, at least one): one step per draw
        assert httpx.get(f"{url}/api/progress", params={"job": "mean-1"}).json() == {"done": 3, "total": 3, "state": "done"}
        assert post(steps=2, seed=3, samples=1, mean=1)[1].tolist() == draws[0].tolist()  # one sample: that draw
        for params, message in [
            ({"samples": 3}, "send mean=1 with it"),
            ({"samples": 17, "mean": 1}, "samples must be a whole number from 1 to 16"),
            ({"mean": 2}, "mean must be a whole number from 0 to 1"),
            ({"model": "nafnet-small", "samples": 2, "mean": 1}, "options of diffusion models"),
        ]:
            r = post(**params)[0]
            assert r.status_code == 400 and message in r.json()["error"] and "\n" not in r.json()["error"], params


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


needs_browser = pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("UNBLUR_REQUIRE_BROWSER"), reason="Debian chromium not installed"
)


def launch(playwright):
    """Debian's headless chromium, offline."""
    return playwright.chromium.launch(
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


def deblur_again(page, timeout: int) -> str:
    """Click Deblur on a page that shows a result and wait for the new one; returns the request's URL."""
    first = page.get_attribute("#after", "src")
    with page.expect_request("**/api/deblur?*") as request:
        page.click("#go")
    page.wait_for_function(
        "([img, first]) => img.src !== first && img.naturalWidth > 0", arg=[page.query_selector("#after"), first], timeout=timeout
    )
    return request.value.url


@needs_browser
def test_browser_upload_compare_download(tmp_path):
    from conftest import run_server
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "blurry photo.png"
    Image.fromarray(textured(90, 120)).save(photo)
    artifacts = Path(os.environ.get("UNBLUR_TEST_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with run_server(models=("nafnet-small", "deblurdiff-small")) as server, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(accept_downloads=True)
        page.goto(server + "/")
        page.wait_for_selector("#model option", state="attached")
        # each model labelled with its speed class, the default first and preselected
        labels = page.eval_on_selector_all("#model option", "options => options.map(o => [o.value, o.textContent, o.selected])")
        assert labels == [
            ["nafnet-small", "nafnet-small — fast", True],
            ["deblurdiff-small", "deblurdiff-small — slow (diffusion)", False],
        ]
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
        url = deblur_again(page, 60_000)
        assert "steps" not in url and "seed" not in url
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


@needs_browser
def test_browser_progress_bar_follows_the_tiles(tmp_path):
    """A photo of many tiles: the page's bar takes the server's tile count as its maximum, is seen below it while
    the server works, and ends full."""
    from conftest import run_server
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "wide.jpg"
    photo.write_bytes(jpeg(768, 1024))
    total = tiles((768, 1024), 256)
    assert total >= 12
    with run_server(tile=256) as server, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.goto(server + "/")
        page.wait_for_selector("#model option", state="attached")
        page.set_input_files("#file", str(photo))
        # every (value, max) the bar shows, recorded as it changes
        page.evaluate(
            """() => {
                const bar = document.getElementById('progress');
                window.seen = [];
                new MutationObserver(() => window.seen.push([bar.value, bar.max, bar.hasAttribute('value')]))
                    .observe(bar, { attributes: true, attributeFilter: ['value', 'max'] });
            }"""
        )
        with page.expect_request("**/api/progress?job=*"):
            page.click("#go")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Done in')", timeout=120_000)
        seen = page.evaluate("window.seen")
        final = page.evaluate("(() => { const b = document.getElementById('progress'); return [b.value, b.max, b.hidden]; })()")
        browser.close()
    assert final == [total, total, False]
    shown = [value for value, top, determinate in seen if determinate and top == total]
    assert any(value < total for value in shown), seen  # seen before the end: the bar moved to its maximum
    assert shown == sorted(shown), seen


@needs_browser
def test_browser_averages_samples_of_a_diffusion_model(tmp_path):
    """The page offers "Mean of K samples" for diffusion models only, sends samples=K&mean=1, and its progress bar
    counts the sampling steps of all K draws, ending full."""
    from conftest import run_server
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "photo.png"
    Image.fromarray(textured(40, 56)).save(photo)
    with run_server(models=("nafnet-small", "deblurdiff-small")) as server, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.goto(server + "/")
        page.wait_for_selector("#model option", state="attached")
        page.set_input_files("#file", str(photo))
        assert not page.is_visible("#samples")
        page.select_option("#model", "deblurdiff-small")
        assert page.is_visible("#samples") and page.input_value("#samples") == "1"
        page.fill("#steps", "2")
        page.fill("#samples", "3")
        with page.expect_request("**/api/deblur?*") as request:
            page.click("#go")
        assert "samples=3" in request.value.url and "mean=1" in request.value.url and "steps=2" in request.value.url
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Done in')", timeout=120_000)
        final = page.evaluate("(() => { const b = document.getElementById('progress'); return [b.value, b.max]; })()")
        size = page.evaluate("[document.getElementById('after').naturalWidth, document.getElementById('after').naturalHeight]")
        page.fill("#samples", "1")
        url = deblur_again(page, 120_000)
        assert "samples" not in url and "mean" not in url
        browser.close()
    assert final == [3, 3] and size == [56, 40]  # 3 draws of one step each (deblurdiff-small's strength 0.1)

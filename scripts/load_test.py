"""Load test of `unblur serve` on loopback: N concurrent uploads of a ~1-megapixel photo.

Starts the server as a subprocess (1 worker, queue 8 by default), fires --clients
uploads at once, and reports how many succeeded, how many were told "busy, retry",
anything else, the latencies, and the server's peak resident memory. Bounded: every
request has a timeout and the server is stopped at the end.

    python scripts/load_test.py [--clients 50] [--workers 1] [--queue 8]
"""

import argparse
import io
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil
from PIL import Image

from unblur.demo import SAMPLES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per request")
    args = ap.parse_args()

    photo = Image.open(SAMPLES / "astronaut-blurred.png").resize((1024, 1024), Image.LANCZOS)
    buf = io.BytesIO()
    photo.save(buf, format="PNG")
    body = buf.getvalue()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "unblur",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--queue",
        str(args.queue),
        "--device",
        "cpu",
        "--timeout",
        str(args.timeout),
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = psutil.Process(server.pid)
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/api/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        idle_rss = proc.memory_info().rss
        peak = [idle_rss]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], proc.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.05)

        results = [None] * args.clients

        def upload(i):
            t0 = time.time()
            try:
                r = httpx.post(f"{url}/api/deblur", params={"name": f"load{i}.png"}, content=body, timeout=args.timeout)
                ok_size = r.status_code != 200 or Image.open(io.BytesIO(r.content)).size == photo.size
                text = r.json().get("error", "") if r.headers.get("content-type", "").startswith("application/json") else ""
                results[i] = (r.status_code, time.time() - t0, ok_size, text)
            except httpx.HTTPError as err:
                results[i] = (type(err).__name__, time.time() - t0, False, str(err))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.time()
        threads = [threading.Thread(target=upload, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - t0
        alive = httpx.get(url + "/api/health", timeout=5).json()
        stop.set()
    finally:
        server.terminate()
        server.wait(timeout=30)

    codes = [r[0] for r in results]
    done = [r for r in results if r[0] == 200]
    busy = [r for r in results if r[0] == 503 and "busy" in r[3]]
    other = [r for r in results if r not in done and r not in busy]
    print(
        f"{args.clients} concurrent uploads of a {photo.size[0]}x{photo.size[1]} PNG ({len(body) / 1e6:.1f} MB), "
        f"{args.workers} worker(s), queue {args.queue}, {wall:.0f} s in all"
    )
    print(
        f"  200 OK: {len(done)} (all full size: {all(r[2] for r in done)}), latency "
        f"{min((r[1] for r in done), default=0):.1f}-{max((r[1] for r in done), default=0):.1f} s"
    )
    print(f"  503 busy, retry: {len(busy)}, answered in at most {max((r[1] for r in busy), default=0):.2f} s")
    print(f"  anything else: {len(other)} {sorted(set(map(str, codes)) - {'200', '503'})}")
    print(f"  server alive afterwards: {alive}; resident memory idle {idle_rss / 2**20:.0f} MiB, peak {peak[0] / 2**20:.0f} MiB")
    return 0 if not other and alive["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

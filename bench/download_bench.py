"""Download throughput against a local server: our ``Downloader`` (2 threads) vs a sequential ``requests`` loop,
and (``vs_img2dataset``) our downloader side by side with img2dataset's ``download()`` on a mixed corpus.

The server (laioncele/testing/http_fixture.py, on 127.0.0.1) adds ``latency_s`` per response to stand in for a
remote host's round trip; without it a loopback fetch costs ~nothing and only CPU would be measured. The baseline
only fetches; the Downloader also validates, resizes and re-encodes every image, so "downloader_1_thread"
is reported too, to separate what the threads buy from what the re-encode costs.

Run: ``.venv/bin/python -m bench.download_bench [n_images]``.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from bench import download_vs_img2dataset
from laioncele.config import DownloadConfig
from laioncele.download.fetch import Downloader
from laioncele.testing.http_fixture import LocalHTTPServer, Response

REPO = Path(__file__).resolve().parents[1]

FACES = REPO.parent / "shared" / "fixtures" / "faces"


def _photos() -> tuple[list[bytes], str]:
    """Real photos when the shared folder is present, else generated 800x600 JPEGs."""
    files = sorted(FACES.glob("*.jpg"))
    if files:
        return [p.read_bytes() for p in files], f"{len(files)} photos from shared/fixtures/faces"
    rng = np.random.default_rng(0)
    images = []
    for i in range(8):
        gradient = np.linspace(0, 255, 800, dtype=np.float32)[None, :, None] * np.ones(
            (600, 1, 3), np.float32
        )
        arr = np.clip(gradient * (0.5 + i / 16) + rng.normal(0, 12, (600, 800, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(arr).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images, "8 generated 800x600 JPEGs"


def run(n_images: int = 200, latency_s: float = 0.02, workers: int = 2, image_size: int = 512) -> dict:
    photos, source = _photos()
    with LocalHTTPServer() as server:
        urls = []
        for i in range(n_images):
            body = photos[i % len(photos)]
            server.route(
                f"/img/{i}.jpg", Response(200, body, {"Content-Type": "image/jpeg"}, delay_s=latency_s)
            )
            urls.append(server.url(f"/img/{i}.jpg"))
        batch = {"sample_id": [f"s{i}" for i in range(n_images)], "url": urls}

        start = time.perf_counter()
        fetched = 0
        with requests.Session() as session:
            for url in urls:
                response = session.get(url, timeout=10)
                fetched += response.status_code == 200 and len(response.content) > 0
        sequential_s = time.perf_counter() - start

        results = {}
        for threads in (1, workers):
            config = DownloadConfig(
                image_size=image_size, allow_loopback=True, thread_count=threads, max_per_host=max(4, threads)
            )
            downloader = Downloader(config)
            start = time.perf_counter()
            result = downloader(batch)
            results[threads] = (time.perf_counter() - start, result.counts["ok"])
            downloader.close()

    return {
        "n_images": n_images,
        "source": source,
        "latency_s": latency_s,
        "image_size": image_size,
        "requests_sequential_fetch_only": {"images_per_s": round(fetched / sequential_s, 1), "ok": fetched},
        "downloader_1_thread": {"images_per_s": round(results[1][1] / results[1][0], 1), "ok": results[1][1]},
        f"downloader_{workers}_threads": {
            "images_per_s": round(results[workers][1] / results[workers][0], 1),
            "ok": results[workers][1],
        },
        "speedup_vs_requests": round(
            (results[workers][1] / results[workers][0]) / (fetched / sequential_s), 2
        ),
        # The same 1,200 URLs through our downloader and img2dataset's download(), see that module.
        "vs_img2dataset": download_vs_img2dataset.run(),
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200), indent=2))

"""Our downloader side by side with img2dataset's own ``download()``, on the same URLs from one loopback server.

The corpus (seeded, ``corpus``): ``n_urls`` URLs over ``n_hosts`` host names (``hNN.bench.test``, all resolved
to 127.0.0.1 by ``bench/loopback_site/sitecustomize.py``, which also refuses any non-loopback connect), each
answered after a log-normal latency (median ~60 ms) to stand in for a remote round trip. Mixed in: 404s, a few
slow hosts (1-2.5 s per response), URLs that never answer within the timeout, HTML served as image/jpeg,
and large photos (4000x3000 JPEG, a few MB).

Each side runs in a fresh Python process (so its CPU seconds and peak RSS are its own, pool workers
included) with the same processes x threads, the same timeout and no retries:

- ``ours``: ``processes`` spawned workers, each a ``laioncele.download.Downloader`` over its half of the
  input, streamed in the download stage's sub-batches (``iter_batches``), writing its ok/failure tables
  to parquet, as ``DownloadTask`` does without Ray around it; guards on (pinned-IP fetch, byte cap,
  deadlines, pixel cap, full decode check), only loopback allowed in addition.
- ``img2dataset``: ``img2dataset.download`` with the same resize (longest side, ratio kept, never upscaled,
  JPEG q95), parquet output, its multiprocessing distributor, everything else at its defaults (EXIF
  extraction and sha256 on).

Reported per side: wall seconds (from the side's start, after imports, to its last file written), ok images
per second, outcomes by reason, CPU seconds (user+system, all its processes), peak RSS (of its largest
process, and of all its processes together, sampled from /proc), images per CPU second, and
``os.getloadavg()`` before and after (the machine is shared: wall figures move with the load, CPU seconds
much less).

Run alone: ``.venv/bin/python -m bench.download_vs_img2dataset`` (merges ``download.vs_img2dataset`` into
bench/results.json); ``make bench`` runs it as part of the ``download`` benchmark.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SITE = Path(__file__).resolve().parent / "loopback_site"
FACES = REPO.parent / "shared" / "fixtures" / "faces"
RESULTS = Path(__file__).resolve().parent / "results.json"

IMAGE_SIZE = 512
SIDES = ("ours", "img2dataset", "fetch_ours", "fetch_img2dataset")
ENCODE_QUALITY = 95


# --- the corpus and its server (in the parent process) ----------------------------------------------------


def _photos() -> list[bytes]:
    files = sorted(FACES.glob("*.jpg"))
    if files:
        return [p.read_bytes() for p in files]
    rng = np.random.default_rng(0)
    out = []
    for i in range(8):
        arr = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8) // (1 + i % 3)
        buffer = io.BytesIO()
        Image.fromarray(arr).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _large_photo(photo: bytes, seed: int) -> bytes:
    """A 4000x3000 JPEG (a camera original): a photo upscaled, with noise so it does not compress away."""
    rng = np.random.default_rng(seed)
    image = Image.open(io.BytesIO(photo)).convert("RGB").resize((4000, 3000), Image.BILINEAR)
    arr = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (3000, 4000, 3), dtype=np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def corpus(
    n_urls: int, n_hosts: int, timeout_s: float, seed: int = 0
) -> tuple[list[tuple[str, str, Any]], Counter[str]]:
    """[(host, path, fixture Response)] and the count of each kind (what a correct downloader should report)."""
    from laioncele.testing.http_fixture import Response

    rng = np.random.default_rng(seed)
    photos = _photos()
    large = [_large_photo(photos[i], seed + i) for i in range(2)]
    html = b"<!doctype html><html><body>Image not found</body></html>"
    slow_hosts = {f"h{i:02d}.bench.test" for i in range(max(1, n_hosts // 13))}
    items, kinds = [], Counter()
    for i in range(n_urls):
        host = f"h{int(rng.integers(n_hosts)):02d}.bench.test"
        latency = float(np.clip(rng.lognormal(np.log(0.06), 0.6), 0.01, 0.5))
        if host in slow_hosts:
            latency = float(rng.uniform(1.0, 2.5))
        draw = float(rng.random())
        jpeg = {"Content-Type": "image/jpeg"}
        if draw < 0.10:
            kind, response = "http_404", Response(404, b"not found", {"Content-Type": "text/plain"}, latency)
        elif draw < 0.11:
            kind, response = "timeout", Response(200, photos[0], jpeg, delay_s=timeout_s + 3)
        elif draw < 0.12:
            kind, response = "not_image", Response(200, html, jpeg, latency)
        elif draw < 0.14:
            kind, response = "ok_large", Response(200, large[i % len(large)], jpeg, latency)
        else:
            kind, response = "ok", Response(200, photos[i % len(photos)], jpeg, latency)
        kinds[kind] += 1
        items.append((host, f"/{host.split('.')[0]}/{i}.jpg", response))
    return items, kinds


# --- one side, in its own process --------------------------------------------------------------------------


def _proc_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        found.append(parent)
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):  # the process may be gone already
                todo += [int(child) for child in task.read_text().split()]
    return found


class _MemorySampler(threading.Thread):
    """Peak memory of this process and its descendants, sampled from /proc every ``interval`` seconds.

    ``ru_maxrss`` cannot be used here: a process inherits its parent's high-water mark across fork and exec,
    so every side would report the bench driver's peak. ``VmHWM`` is reset at exec; ``VmRSS`` summed over the
    process tree at one instant gives the side's total.
    """

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_process_kib = 0
        self.peak_total_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        tree = _descendants(os.getpid())
        self.peak_total_kib = max(self.peak_total_kib, sum(_proc_kib(pid, "VmRSS") for pid in tree))
        self.peak_process_kib = max([self.peak_process_kib] + [_proc_kib(pid, "VmHWM") for pid in tree])

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join()
        self.sample()
        return {
            "peak_rss_mib_largest_process": round(self.peak_process_kib / 1024, 1),
            "peak_rss_mib_all_processes": round(self.peak_total_kib / 1024, 1),
        }


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 2)


def _ours_unit(args: tuple[str, int, int, dict[str, Any], str]) -> dict[str, int]:
    """One worker's unit: its rows through the Downloader's stream in the stage's sub-batches, to parquet."""
    from laioncele.config import DownloadConfig
    from laioncele.download.fetch import Downloader
    from pipelines.stages.download import SUB_BATCH

    input_path, start, stop, config, out_dir = args
    rows = pq.read_table(input_path).slice(start, stop - start)
    downloader = Downloader(DownloadConfig(**config))
    counts: Counter[str] = Counter()
    ok_parts, failure_parts = [], []
    for result in downloader.iter_batches(rows, SUB_BATCH):  # as DownloadTask.process streams a unit
        ok_parts.append(result.ok)
        failure_parts.append(result.failures)
        counts.update(result.counts)
    downloader.close()
    pq.write_table(pa.concat_tables(ok_parts), f"{out_dir}/{start:08d}.parquet")
    pq.write_table(pa.concat_tables(failure_parts), f"{out_dir}/{start:08d}_failures.parquet")
    return dict(counts)


def _run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    n = pq.read_metadata(spec["input"]).num_rows
    per = -(-n // spec["processes"])
    config = {
        "image_size": IMAGE_SIZE,
        "encode_quality": ENCODE_QUALITY,
        "thread_count": spec["threads"],
        "timeout_s": spec["timeout_s"],
        "max_retries": 0,
        "allow_loopback": True,
    }
    Path(spec["out"]).mkdir()
    units = [(spec["input"], s, min(n, s + per), config, spec["out"]) for s in range(0, n, per)]
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    with get_context("spawn").Pool(spec["processes"]) as pool:
        for unit_counts in pool.imap_unordered(_ours_unit, units):
            counts.update(unit_counts)
    return {"wall_s": time.perf_counter() - started, "reasons": dict(counts)}


def _img2dataset_reason(status: str, message: str | None) -> str:
    """img2dataset's status + error string in our reason vocabulary (its raw messages are kept too)."""
    if status == "success":
        return "ok"
    text = (message or "").lower()
    if "http error" in text:
        return "http_" + text.split("http error", 1)[1].strip().split(":", 1)[0]
    if "timed out" in text:
        return "timeout"
    if status == "failed_to_resize":
        return "decode_error"
    return "connection" if text else "unknown"


def _run_img2dataset(spec: dict[str, Any]) -> dict[str, Any]:
    from img2dataset import download

    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        download(
            url_list=spec["input"],
            input_format="parquet",
            url_col="url",
            output_folder=spec["out"],
            output_format="parquet",
            image_size=IMAGE_SIZE,
            resize_mode="keep_ratio_largest",
            resize_only_if_bigger=True,
            encode_quality=ENCODE_QUALITY,
            encode_format="jpg",
            processes_count=spec["processes"],
            thread_count=spec["threads"],
            number_sample_per_shard=-(-pq.read_metadata(spec["input"]).num_rows // spec["processes"]),
            timeout=int(spec["timeout_s"]),
            retries=0,
        )
    wall = time.perf_counter() - started
    reasons, messages = Counter(), Counter()
    for path in sorted(Path(spec["out"]).glob("*.parquet")):
        table = pq.read_table(path, columns=["status", "error_message"]).to_pydict()
        for status, message in zip(table["status"], table["error_message"], strict=True):
            reasons[_img2dataset_reason(status, message)] += 1
            if status != "success":
                messages[(message or status)[:80]] += 1
    return {"wall_s": wall, "reasons": dict(reasons), "error_messages": dict(messages.most_common(8))}


def _run_fetch(spec: dict[str, Any], layer: str) -> dict[str, Any]:
    """The fetch layers alone (no decode, no resize, no writing), processes x threads threads in one process.

    ``fetch_ours``: ``Downloader._fetch_once`` (checked, pinned, bounded). ``fetch_img2dataset``: the "guard
    around img2dataset's fetch" alternative: ``netsafety.check_url`` first, then img2dataset's own
    ``download_image`` (urllib), which resolves again and reads without bounds.
    """
    from concurrent.futures import ThreadPoolExecutor

    from img2dataset.downloader import download_image

    from laioncele.config import DownloadConfig
    from laioncele.download.fetch import Downloader, FetchFailure
    from laioncele.download.netsafety import check_url

    urls = pq.read_table(spec["input"], columns=["url"]).column("url").to_pylist()
    timeout = spec["timeout_s"]
    downloader = Downloader(DownloadConfig(timeout_s=timeout, max_retries=0, allow_loopback=True))

    def ours(url: str) -> str:
        try:
            downloader._fetch_once(url)  # the fetch layer only: what download_one runs before the encoder
        except FetchFailure as failure:
            return failure.reason
        return "ok"

    def theirs(url: str) -> str:
        refused = check_url(url, allow_loopback=True)
        if refused:
            return refused
        _key, stream, error = download_image((0, url), int(timeout), None, None)
        return "ok" if stream is not None else _img2dataset_reason("failed_to_download", error)

    started = time.perf_counter()
    with ThreadPoolExecutor(spec["processes"] * spec["threads"]) as pool:
        reasons = Counter(pool.map(ours if layer == "fetch_ours" else theirs, urls))
    downloader.close()
    return {"wall_s": time.perf_counter() - started, "reasons": dict(reasons)}


def side_main(which: str, spec_path: str) -> None:
    """Entry point of a side's process: run it, print its figures as JSON on the last stdout line."""
    spec = json.loads(Path(spec_path).read_text())
    load_before = os.getloadavg()
    memory = _MemorySampler()
    memory.start()
    if which.startswith("fetch_"):
        result = _run_fetch(spec, which)
    else:
        result = _run_ours(spec) if which == "ours" else _run_img2dataset(spec)
    ok = result["reasons"].get("ok", 0)
    result.update(memory.stop())
    result["cpu_s"] = _cpu_s()
    result.update(
        {
            "wall_s": round(result["wall_s"], 2),
            "ok": ok,
            "images_per_s": round(ok / result["wall_s"], 1),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
    )
    print(json.dumps(result), flush=True)


# --- both sides --------------------------------------------------------------------------------------------


def _sides(whiches: tuple[str, ...], spec: dict[str, Any], work: Path) -> dict[str, dict[str, Any]]:
    """Run these sides at once (one: alone), each in its own Python process; their figures by side."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SITE), str(REPO)]),
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TQDM_DISABLE": "1",
    }
    started = {}
    for which in whiches:
        out = work / f"out_{which}"  # created by the side (img2dataset wants to create its own)
        spec_path = work / f"spec_{which}.json"
        spec_path.write_text(json.dumps({**spec, "out": str(out)}))
        code = f"import sys; from bench.download_vs_img2dataset import side_main; side_main({which!r}, sys.argv[1])"
        with open(work / f"{which}.out", "w") as stdout, open(work / f"{which}.err", "w") as stderr:
            started[which] = subprocess.Popen(
                [sys.executable, "-c", code, str(spec_path)], cwd=REPO, env=env, stdout=stdout, stderr=stderr
            )
    figures = {}
    for which, process in started.items():
        if process.wait(timeout=900) != 0:
            error = (work / f"{which}.err").read_text()[-4000:]
            raise RuntimeError(f"{which} side failed ({process.returncode}):\n{error}")
        figures[which] = json.loads((work / f"{which}.out").read_text().strip().splitlines()[-1])
    return figures


def run(
    n_urls: int = 1200,
    n_hosts: int = 40,
    processes: int = 2,
    threads: int = 16,
    timeout_s: float = 5.0,
    repeats: int = 2,
) -> dict[str, Any]:
    """Both sides ``repeats`` times, interleaved (ours, img2dataset, ours, ...) so a load change hits both;
    the headline ratio is the median over the (ours, next img2dataset) pairs."""
    from laioncele.testing.http_fixture import LocalHTTPServer

    items, kinds = corpus(n_urls, n_hosts, timeout_s)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with LocalHTTPServer() as server:
        urls = []
        for host, path, response in items:
            server.route(path, response)
            urls.append(f"http://{host}:{server.port}{path}")
        spec = {"processes": processes, "threads": threads, "timeout_s": timeout_s}
        for attempt in range(repeats):
            for which in runs:
                with tempfile.TemporaryDirectory(prefix=f"dl_vs_i2d_{which}_{attempt}_") as tmp:
                    work = Path(tmp)
                    spec["input"] = str(work / "urls.parquet")
                    sample_ids = [f"s{i:06d}" for i in range(len(urls))]
                    pq.write_table(pa.table({"url": urls, "sample_id": sample_ids}), spec["input"])
                    before = server.total_requests
                    figures = _sides((which,), spec, work)[which]
                    figures["requests_served"] = server.total_requests - before
                    runs[which].append(figures)
        # Both at once: the same load, whatever the other helpers do meanwhile (they share the CPUs too).
        with tempfile.TemporaryDirectory(prefix="dl_vs_i2d_together_") as tmp:
            work = Path(tmp)
            spec["input"] = str(work / "urls.parquet")
            pq.write_table(pa.table({"url": urls, "sample_id": sample_ids}), spec["input"])
            together = _sides(("ours", "img2dataset"), spec, work)
    best = {which: max(side_runs, key=lambda r: r["images_per_s"]) for which, side_runs in runs.items()}

    def median_ratio(a: str, b: str) -> float:
        """Each run of ``a`` against the ``b`` run right after it (the nearest load), median over runs."""
        pairs = [x["images_per_s"] / y["images_per_s"] for x, y in zip(runs[a], runs[b], strict=True)]
        return round(statistics.median(pairs), 2)

    ours, theirs = best["ours"], best["img2dataset"]
    return {
        "n_urls": n_urls,
        "n_hosts": n_hosts,
        "processes": processes,
        "threads_per_process": threads,
        "timeout_s": timeout_s,
        "retries": 0,
        "image_size": IMAGE_SIZE,
        "corpus_kinds": dict(kinds),
        "ours": ours,
        "img2dataset": theirs,
        "fetch_layer_only": {
            "ours": best["fetch_ours"],
            "img2dataset_with_check_url": best["fetch_img2dataset"],
            "throughput_ratio": median_ratio("fetch_ours", "fetch_img2dataset"),
            "cpu_ratio": round(best["fetch_ours"]["cpu_s"] / best["fetch_img2dataset"]["cpu_s"], 2),
        },
        "runs_images_per_s": {
            which: [r["images_per_s"] for r in side_runs] for which, side_runs in runs.items()
        },
        "runs_cpu_s": {which: [r["cpu_s"] for r in side_runs] for which, side_runs in runs.items()},
        "throughput_ratio_ours_over_img2dataset": median_ratio("ours", "img2dataset"),
        "run_together": {
            "ours": together["ours"],
            "img2dataset": together["img2dataset"],
            "throughput_ratio": round(
                together["ours"]["images_per_s"] / together["img2dataset"]["images_per_s"], 2
            ),
        },
        "throughput_ratio_best_over_best": round(ours["images_per_s"] / theirs["images_per_s"], 2),
        # CPU seconds move far less with the load than wall time: images per CPU second, all processes.
        "images_per_cpu_s": {which: round(best[which]["ok"] / best[which]["cpu_s"], 1) for which in runs},
        "cpu_ratio_ours_over_img2dataset": round(ours["cpu_s"] / theirs["cpu_s"], 2),
        "note": (
            f"{repeats} interleaved rounds of {', '.join(SIDES)}; each side's entry is its best run; "
            "fetch_layer_only: the two fetch layers without decode or writing, in one process with as many "
            "threads; loopback server in the parent process; shared 2-core machine with other "
            "helpers' work: see each side's loadavg"
        ),
    }


def merge_into_results(result: dict[str, Any]) -> None:
    """Put ``result`` under download.vs_img2dataset, leaving every other key of results.json as it is."""
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results.setdefault("download", {})["vs_img2dataset"] = result
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    figures = run(*(int(a) for a in sys.argv[1:3]))
    figures["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    merge_into_results(figures)
    print(json.dumps(figures, indent=2, sort_keys=True))

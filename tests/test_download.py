"""Download stage against a real HTTP server on 127.0.0.1: images, every failure reason, safety, politeness.

Network rule for these tests: traffic goes to 127.0.0.1 only. A guard wraps ``socket.create_connection``
for the whole module: it records every connection and refuses (without connecting) any non-loopback
address, so a regression in the address checks fails a test instead of sending a packet anywhere.
"""

from __future__ import annotations

import csv
import hashlib
import io
import socket
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from tls_fixture import Issued, make_ca, make_leaf, server_context, write_cert

from laioncele.config import Config, DownloadConfig
from laioncele.download.fetch import (
    Downloader,
    HostScheduler,
    as_table,
    filter_opted_out,
    normalise_name,
    parse_retry_after,
)
from laioncele.download.netsafety import check_url, is_public_address
from laioncele.io import schema
from laioncele.testing.http_fixture import LocalHTTPServer, Response

MAX_SIDE = 128


# --- guards and helpers ---------------------------------------------------------------------------------


_ATTEMPTED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _network_guard():  # type: ignore[no-untyped-def]
    """Module-wide (so it also covers the module-scoped batch): non-loopback connects are refused."""
    real_create_connection = socket.create_connection

    def guarded(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        host = str(address[0])
        _ATTEMPTED.append(host)
        if not (host.startswith("127.") or host == "::1"):
            raise AssertionError(f"test tried to connect to non-loopback address {host}")
        return real_create_connection(address, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "create_connection", guarded)
        yield


@pytest.fixture
def connections() -> list[str]:
    """Addresses connected to during this test (the list is reset for each test)."""
    _ATTEMPTED.clear()
    return _ATTEMPTED


def fake_resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """Test DNS: names in ``table`` resolve to its addresses, any other name fails like NXDOMAIN."""

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: shows where a rotation put them."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    return encode(halves(300, 200), "JPEG", quality=95, exif=exif.tobytes())


def forged_png_header(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR claims ``width`` x ``height``: a bomb seen by its header alone."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rows(urls: dict[str, str], names: dict[str, list[str]] | None = None) -> pa.Table:
    names = names or {}
    return pa.table(
        {
            "sample_id": list(urls),
            "url": list(urls.values()),
            "caption": [f"photo {k}" for k in urls],
            "names": [names.get(k, []) for k in urls],
        }
    )


def config(**overrides) -> DownloadConfig:  # type: ignore[no-untyped-def]
    settings = dict(
        image_size=MAX_SIDE,
        allow_loopback=True,
        timeout_s=0.5,
        max_retries=2,
        backoff_s=0.01,
        max_retry_after_s=5.0,
        # Off here: these tests count each URL's own retries and waits (with a fake sleep); the host-wide
        # Retry-After pause waits in real time and is tested in test_download_hostile.py.
        max_host_pause_s=0.0,
        max_bytes=200_000,
        max_pixels=1_000_000,
        thread_count=4,
        max_redirects=3,
    )
    settings.update(overrides)
    return DownloadConfig(**settings)


# --- the whole taxonomy in one batch ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_batch():
    """One batch covering every case, downloaded once; yields (server, result, sleeps, urls)."""
    with LocalHTTPServer() as server:
        jpeg = "image/jpeg"
        png = "image/png"
        gif_frames = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 255, 0))]
        truncated = encode(noise_rgb(300, 200, 1), "JPEG")
        urls = {
            "good_jpeg": server.image("/good.jpg", encode(noise_rgb(300, 200), "JPEG"), jpeg),
            "small_png": server.image("/small.png", encode(noise_rgb(50, 40), "PNG"), png),
            "exif_rotated": server.image("/exif.jpg", exif_rotated_jpeg(), jpeg),
            "cmyk": server.image("/cmyk.jpg", encode(noise_rgb(256, 128).convert("CMYK"), "JPEG"), jpeg),
            "gray16": server.image(
                "/gray16.png", encode(Image.fromarray(np.full((64, 96), 32896, np.uint16)), "PNG"), png
            ),
            "rgb48": server.image(
                "/rgb48.png", cv2.imencode(".png", np.full((40, 80, 3), 32896, np.uint16))[1].tobytes(), png
            ),
            "alpha": server.image(
                "/alpha.png", encode(Image.new("RGBA", (60, 60), (0, 0, 0, 0)), "PNG"), png
            ),
            "animated": server.image(
                "/anim.gif",
                encode(gif_frames[0], "GIF", save_all=True, append_images=gif_frames[1:]),
                "image/gif",
            ),
            "other_bot_header": server.image(
                "/otherbot.jpg", encode(noise_rgb(20, 20), "JPEG"), jpeg, **{"X-Robots-Tag": "otherbot: noai"}
            ),
            "redirect_ok": server.route("/redir-ok", Response(302, headers={"Location": "/good.jpg"})),
            "mixed_dns": f"http://mixed.test:{server.port}/good.jpg",
            "rate_limited_then_ok": server.route(
                "/429.jpg",
                Response(429, b"slow down", {"Retry-After": "1"}),
                Response(200, encode(noise_rgb(30, 30), "JPEG"), {"Content-Type": jpeg}),
            ),
            "unavailable_then_ok": server.route(
                "/503.jpg",
                Response(503, b"busy"),
                Response(200, encode(noise_rgb(30, 30), "JPEG"), {"Content-Type": jpeg}),
            ),
            "missing": server.route("/missing.jpg", Response(404, b"nope")),
            "forbidden": server.route("/forbidden.jpg", Response(403, b"nope")),
            "server_error": server.route("/500.jpg", Response(500, b"boom")),
            "rate_limited_forever": server.route(
                "/429-forever.jpg", Response(429, b"", {"Retry-After": "3600"})
            ),
            "slow": server.route("/slow.jpg", Response(200, b"x", {"Content-Type": jpeg}, delay_s=3.0)),
            "bomb_pixels": server.image("/bomb.png", encode(Image.new("L", (2000, 1000)), "PNG"), png),
            "bomb_header": server.image("/bomb-header.png", forged_png_header(100_000, 100_000), png),
            "corrupt": server.image(
                "/corrupt.jpg", bytes(np.random.default_rng(3).integers(0, 256, 5000)), jpeg
            ),
            "truncated": server.image("/truncated.jpg", truncated[: len(truncated) // 2], jpeg),
            "html_page": server.image("/page.jpg", b"<!DOCTYPE html><html>Not found</html>", "text/html"),
            "html_as_jpeg": server.image("/fake.jpg", b"<html><body>error</body></html>", jpeg),
            "too_large": server.image("/large.jpg", bytes(300_000), jpeg),
            "too_large_no_length": server.route(
                "/large-stream.jpg",
                Response(200, bytes(300_000), {"Content-Type": jpeg}, content_length=False),
            ),
            "noai_header": server.image(
                "/noai.jpg", encode(noise_rgb(20, 20), "JPEG"), jpeg, **{"X-Robots-Tag": "noai"}
            ),
            "our_token_header": server.image(
                "/ours.jpg",
                encode(noise_rgb(20, 20), "JPEG"),
                jpeg,
                **{"X-Robots-Tag": "laioncele: noimageai, nofollow"},
            ),
            "redirect_private": server.route(
                "/to-private", Response(302, headers={"Location": "http://10.0.0.1/a.jpg"})
            ),
            "redirect_metadata": server.route(
                "/to-metadata",
                Response(301, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
            ),
            "redirect_file": server.route(
                "/to-file", Response(302, headers={"Location": "file:///etc/passwd"})
            ),
            "redirect_loop": server.route("/loop", Response(302, headers={"Location": "/loop"})),
            "rebinding_host": f"http://internal.test:{server.port}/good.jpg",
            "nxdomain": f"http://nxdomain.test:{server.port}/good.jpg",
            "ftp": "ftp://127.0.0.1/a.jpg",
            "javascript": "javascript:alert(1)",
            "opted_out": server.image("/person.jpg", encode(noise_rgb(20, 20), "JPEG"), jpeg),
        }
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        urls["refused"] = f"http://127.0.0.1:{closed.getsockname()[1]}/a.jpg"
        closed.close()
        sleeps: list[float] = []
        resolver = fake_resolver(
            {"mixed.test": ["10.0.0.1", "127.0.0.1"], "internal.test": ["10.1.2.3", "fd00::1"]}
        )
        downloader = Downloader(
            config(), opt_out_names=["Zoë Saldaña"], resolver=resolver, sleep=sleeps.append
        )
        result = downloader(rows(urls, {"opted_out": ["zoe_saldana"]}))
        downloader.close()
        yield server, result, sleeps, urls


EXPECTED_COUNTS = {
    "ok": 13,
    "http_404": 1,
    "http_403": 1,
    "http_5xx": 1,
    "http_429": 1,
    "timeout": 1,
    "connection": 1,
    "bomb": 2,
    "decode_error": 2,
    "not_image": 2,
    "too_large": 2,
    "opted_out_header": 2,
    "blocked_address": 3,
    "bad_scheme": 3,
    "too_many_redirects": 1,
    "dns": 1,
    "opted_out_name": 1,
}

EXPECTED_REASON = {
    "missing": "http_404",
    "forbidden": "http_403",
    "server_error": "http_5xx",
    "rate_limited_forever": "http_429",
    "slow": "timeout",
    "refused": "connection",
    "bomb_pixels": "bomb",
    "bomb_header": "bomb",
    "corrupt": "decode_error",
    "truncated": "decode_error",
    "html_page": "not_image",
    "html_as_jpeg": "not_image",
    "too_large": "too_large",
    "too_large_no_length": "too_large",
    "noai_header": "opted_out_header",
    "our_token_header": "opted_out_header",
    "redirect_private": "blocked_address",
    "redirect_metadata": "blocked_address",
    "rebinding_host": "blocked_address",
    "redirect_file": "bad_scheme",
    "ftp": "bad_scheme",
    "javascript": "bad_scheme",
    "redirect_loop": "too_many_redirects",
    "nxdomain": "dns",
    "opted_out": "opted_out_name",
}


def test_exact_counts_per_reason(served_batch) -> None:
    _server, result, _sleeps, urls = served_batch
    assert result.counts == Counter(EXPECTED_COUNTS)
    assert sum(result.counts.values()) == len(urls)
    assert result.ok.num_rows == EXPECTED_COUNTS["ok"]
    assert result.failures.num_rows == len(urls) - EXPECTED_COUNTS["ok"]
    reasons = dict(
        zip(result.failures["sample_id"].to_pylist(), result.failures["reason"].to_pylist(), strict=True)
    )
    assert reasons == EXPECTED_REASON


def test_output_tables_follow_versioned_schemas(served_batch) -> None:
    _server, result, _sleeps, _urls = served_batch
    assert result.ok.schema == schema.DOWNLOAD
    assert result.failures.schema == schema.DOWNLOAD_FAILURES
    assert set(result.ok["image_format"].to_pylist()) == {"jpg"}
    retryable = dict(
        zip(result.failures["reason"].to_pylist(), result.failures["retryable"].to_pylist(), strict=False)
    )
    assert (
        retryable["timeout"] and retryable["http_5xx"] and not retryable["http_404"] and not retryable["dns"]
    )


def test_good_images_decode_with_max_side_and_ratio(served_batch) -> None:
    _server, result, _sleeps, _urls = served_batch
    by_id = {row["sample_id"]: row for row in result.ok.to_pylist()}
    for row in by_id.values():
        image = decoded(row["image"])
        assert image.format == "JPEG"
        assert image.size == (row["width"], row["height"])
        assert max(image.size) <= MAX_SIDE
        assert row["sha256"] == hashlib.sha256(row["image"]).hexdigest()
        ratio_in = row["original_width"] / row["original_height"]
        assert abs(row["width"] / row["height"] - ratio_in) < 0.02 * ratio_in
    good = by_id["good_jpeg"]
    assert (good["original_width"], good["original_height"], good["width"], good["height"]) == (
        300,
        200,
        128,
        85,
    )
    small = by_id["small_png"]  # never upscaled
    assert (small["original_width"], small["original_height"], small["width"], small["height"]) == (
        50,
        40,
        50,
        40,
    )
    assert by_id["redirect_ok"]["sha256"] == good["sha256"] == by_id["mixed_dns"]["sha256"]


def test_exif_rotation_is_applied(served_batch) -> None:
    _server, result, _sleeps, _urls = served_batch
    row = next(r for r in result.ok.to_pylist() if r["sample_id"] == "exif_rotated")
    assert (row["original_width"], row["original_height"]) == (200, 300)
    assert (row["width"], row["height"]) == (85, 128)
    pixels = np.asarray(decoded(row["image"]).convert("RGB")).astype(int)
    top, bottom = pixels[10, 42], pixels[-10, 42]  # the left (red) half is on top once rotated clockwise
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_hostile_pixel_formats_become_8bit_rgb(served_batch) -> None:
    _server, result, _sleeps, _urls = served_batch
    by_id = {row["sample_id"]: decoded(row["image"]) for row in result.ok.to_pylist()}
    assert by_id["cmyk"].mode == "RGB" and by_id["cmyk"].size == (128, 64)
    gray = np.asarray(by_id["gray16"].convert("L")).astype(int)
    assert abs(gray.mean() - 128) <= 2  # 16-bit 32896 scales to 128 (a clipping convert would give 255)
    rgb48 = np.asarray(by_id["rgb48"].convert("RGB")).astype(int)
    assert by_id["rgb48"].size == (80, 40) and abs(rgb48.mean() - 128) <= 2
    alpha = np.asarray(by_id["alpha"].convert("RGB")).astype(int)
    assert alpha.min() >= 250  # transparent pixels matted onto white by img2dataset's Resizer
    first_frame = np.asarray(by_id["animated"].convert("RGB")).astype(int).mean(axis=(0, 1))
    assert first_frame[0] > 200 and first_frame[1] < 60  # red first frame, not the green second one


def test_retries_are_bounded_and_honour_retry_after(served_batch) -> None:
    server, result, sleeps, _urls = served_batch
    attempts = dict(
        zip(result.failures["sample_id"].to_pylist(), result.failures["attempts"].to_pylist(), strict=True)
    )
    ok_attempts = dict(
        zip(result.ok["sample_id"].to_pylist(), result.ok["attempts"].to_pylist(), strict=True)
    )
    # transient: 1 + max_retries attempts, and the server saw exactly those
    assert attempts["server_error"] == 3 and server.requests["/500.jpg"] == 3
    assert attempts["slow"] == 3 and server.requests["/slow.jpg"] == 3
    assert attempts["refused"] == 3
    assert attempts["rate_limited_forever"] == 3 and server.requests["/429-forever.jpg"] == 3
    assert ok_attempts["rate_limited_then_ok"] == 2 and server.requests["/429.jpg"] == 2
    assert ok_attempts["unavailable_then_ok"] == 2 and server.requests["/503.jpg"] == 2
    # permanent: one attempt only
    assert attempts["missing"] == 1 and server.requests["/missing.jpg"] == 1
    assert attempts["corrupt"] == 1 and server.requests["/corrupt.jpg"] == 1
    assert server.requests["/loop"] == 4  # max_redirects=3: 4 hops, then refused
    # Retry-After: 1 s honoured as given; 3600 s capped at max_retry_after_s (5 s)
    assert sorted(s for s in sleeps if s >= 1.0) == [1.0, 5.0, 5.0]
    assert len(sleeps) == 2 + 2 + 2 + 2 + 1 + 1  # 500, slow, refused, 429-forever, then-ok 429 and 503


def test_refused_targets_were_never_contacted(served_batch) -> None:
    server, _result, _sleeps, _urls = served_batch
    assert server.requests["/person.jpg"] == 0  # opted-out name: removed before any request
    # redirects to private/metadata addresses were refused at the check: only the loopback server was
    # contacted (the module-wide guard would have failed the batch otherwise), and nothing was fetched twice.
    assert server.requests["/to-private"] == 1 and server.requests["/to-metadata"] == 1


def test_default_refuses_loopback_without_connecting(connections: list[str]) -> None:
    with LocalHTTPServer() as server:
        url = server.image("/good.jpg", encode(noise_rgb(64, 64), "JPEG"))
        downloader = Downloader(DownloadConfig(timeout_s=1.0))  # allow_loopback defaults to False
        assert downloader.config.allow_loopback is False
        result = downloader(rows({"a": url, "b": f"http://[::1]:{server.port}/good.jpg"}))
        downloader.close()
        assert result.counts == Counter({"blocked_address": 2})
        assert server.total_requests == 0
    assert connections == []


def test_connection_is_pinned_to_the_checked_address(connections: list[str]) -> None:
    """A resolver that would rebind to a private address on a second lookup is asked only once."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    calls: list[str] = []

    def rebinding_resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    with LocalHTTPServer() as server:
        server.image("/good.jpg", encode(noise_rgb(64, 64), "JPEG"))
        downloader = Downloader(config(), resolver=rebinding_resolver)
        result = downloader(rows({"a": f"http://rebind.test:{server.port}/good.jpg"}))
        downloader.close()
    assert result.counts == Counter({"ok": 1})
    assert calls == ["rebind.test"]
    assert connections == ["127.0.0.1"]


def test_per_host_concurrency_is_bounded() -> None:
    with LocalHTTPServer() as server:
        body = encode(noise_rgb(16, 16), "JPEG")
        urls = {
            f"s{i}": server.route(
                f"/{i}.jpg", Response(200, body, {"Content-Type": "image/jpeg"}, delay_s=0.2)
            )
            for i in range(12)
        }
        downloader = Downloader(config(thread_count=6, max_per_host=2, timeout_s=5.0))
        result = downloader(rows(urls))
        downloader.close()
    assert result.counts == Counter({"ok": 12})
    assert 1 <= server.max_in_flight <= 2  # six threads, one host: never more than max_per_host at once


def test_host_scheduler_parks_busy_and_paused_hosts_and_keeps_each_hosts_order() -> None:
    now = [0.0]
    scheduler: HostScheduler[int] = HostScheduler(max_per_host=1, clock=lambda: now[0])
    for host, item in [("a", 1), ("a", 2), ("b", 3), ("a", 4), ("b", 5)]:
        scheduler.add(host, item)
    scheduler.close()
    assert scheduler.take() == ("a", 1)
    assert scheduler.take() == ("b", 3)  # a is busy: its next item waits, b's goes first
    scheduler.pause("a", 10.0)
    scheduler.done("a")
    scheduler.done("b")
    assert scheduler.take() == ("b", 5)  # a has a free slot but is paused
    scheduler.done("b")
    now[0] = 10.0
    assert scheduler.take() == ("a", 2)  # the pause is over: a's items in their order
    scheduler.done("a")
    assert scheduler.take() == ("a", 4)
    scheduler.done("a")
    assert scheduler.take() is None  # closed and drained


def test_a_busy_slow_host_does_not_hold_threads_other_hosts_need() -> None:
    """Two threads, one slot per host: while the slow host's first URL is in flight, its next URLs wait
    parked and the second thread fetches every fast-host URL (a thread blocked on the slow host's slot, as
    before, left them all waiting behind it)."""
    with LocalHTTPServer(hostname="slow.test") as slow, LocalHTTPServer(hostname="fast.test") as fast:
        body = encode(noise_rgb(16, 16), "JPEG")
        jpeg = {"Content-Type": "image/jpeg"}
        urls = {f"slow{i}": slow.route(f"/{i}.jpg", Response(200, body, jpeg, delay_s=1.0)) for i in range(3)}
        urls |= {f"fast{i}": fast.route(f"/{i}.jpg", Response(200, body, jpeg)) for i in range(8)}
        resolver = fake_resolver({"slow.test": ["127.0.0.1"], "fast.test": ["127.0.0.1"]})
        downloader = Downloader(config(thread_count=2, max_per_host=1, timeout_s=5.0), resolver=resolver)
        result = downloader(rows(urls))
        downloader.close()
    assert result.counts == Counter({"ok": 11})
    slow_times = sorted(when for _path, when in slow.request_log)
    assert len(slow_times) == 3 and slow_times[1] - slow_times[0] >= 1.0  # one at a time on the slow host
    assert max(when for _path, when in fast.request_log) < slow_times[1]  # all fast ones before the 2nd slow


def test_iter_batches_fetches_ahead_by_one_slice_and_yields_in_order() -> None:
    """Slice 0 waits on one slow URL; slice 1 is fetched meanwhile, slice 2 only once slice 0 is done (at most
    two slices held), and the results come back in order, each with exactly its own rows."""
    with LocalHTTPServer() as server:
        body = encode(noise_rgb(16, 16), "JPEG")
        jpeg = {"Content-Type": "image/jpeg"}
        urls = {"slow": server.route("/slow.jpg", Response(200, body, jpeg, delay_s=1.0))}
        urls |= {f"s{i}": server.route(f"/{i}.jpg", Response(200, body, jpeg)) for i in range(1, 6)}
        urls["missing"] = server.url("/missing.jpg")
        downloader = Downloader(config(thread_count=4, max_per_host=4, timeout_s=5.0))
        results = list(downloader.iter_batches(rows(urls), batch_rows=3))
        downloader.close()
    ids = [sorted(r.ok["sample_id"].to_pylist() + r.failures["sample_id"].to_pylist()) for r in results]
    assert ids == [["s1", "s2", "slow"], ["s3", "s4", "s5"], ["missing"]]
    assert [r.counts for r in results] == [Counter({"ok": 3}), Counter({"ok": 3}), Counter({"http_404": 1})]
    when = {path: t for path, t in server.request_log}
    slow_answered = when["/slow.jpg"] + 1.0
    assert max(when[f"/{i}.jpg"] for i in (3, 4, 5)) < slow_answered  # slice 1 went on while slice 0 waited
    assert when["/missing.jpg"] >= slow_answered  # slice 2 was admitted only once slice 0 was done


def test_header_opt_out_can_be_switched_off_explicitly() -> None:
    with LocalHTTPServer() as server:
        url = server.image("/noai.jpg", encode(noise_rgb(16, 16), "JPEG"), **{"X-Robots-Tag": "noai"})
        honouring = Downloader(config())
        ignoring = Downloader(config(disallowed_header_directives=[]))
        assert honouring(rows({"a": url})).counts == Counter({"opted_out_header": 1})
        assert ignoring(rows({"a": url})).counts == Counter({"ok": 1})
        honouring.close()
        ignoring.close()


def test_real_photos_download_and_reencode(face_photos: Path) -> None:
    labelled = sorted(
        row["file"] for row in csv.DictReader((face_photos / "labels.csv").open(encoding="utf-8"))
    )
    photos = [face_photos / name for name in labelled[:6]]
    assert photos
    with LocalHTTPServer() as server:
        urls = {p.stem: server.image(f"/{p.name}", p.read_bytes()) for p in photos}
        downloader = Downloader(
            config(image_size=256, max_bytes=5_000_000, max_pixels=10_000_000, encode_format="webp")
        )
        result = downloader(rows(urls))
        downloader.close()
    assert result.counts == Counter({"ok": len(photos)})
    for row in result.ok.to_pylist():
        with Image.open(face_photos / f"{row['sample_id']}.jpg") as source:
            source_size = source.size
        stored = decoded(row["image"])
        assert stored.format == "WEBP" and stored.size == (row["width"], row["height"])
        assert max(stored.size) == 256 < max(source_size)
        assert (row["original_width"], row["original_height"]) == source_size  # these carry no rotation


# --- HTTPS: SNI and certificate verification against the URL's hostname, pinned to 127.0.0.1 -------------


TLS_HOST = "images.test"


@dataclass(frozen=True)
class LocalPKI:
    ca_file: str  # the PEM bundle handed to ``DownloadConfig.ca_bundle``
    directory: Path
    good: Issued  # images.test + IP 127.0.0.1, signed by the trusted CA
    other_host: Issued  # other.test, signed by the trusted CA
    self_signed: Issued  # images.test, signed by itself: no trusted CA vouches for it

    def server(self, issued: Issued, hostname: str = TLS_HOST) -> LocalHTTPServer:
        stem = f"{issued.cert.serial_number:x}"
        return LocalHTTPServer(tls=server_context(issued, self.directory, stem), hostname=hostname)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPKI:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    return LocalPKI(
        ca_file=str(write_cert(directory / "ca.pem", ca.cert)),
        directory=directory,
        good=make_leaf([TLS_HOST], ["127.0.0.1"], issuer=ca),
        other_host=make_leaf(["other.test"], issuer=ca),
        self_signed=make_leaf([TLS_HOST]),
    )


def tls_resolver():  # type: ignore[no-untyped-def]
    return fake_resolver({TLS_HOST: ["127.0.0.1"], "internal.test": ["10.1.2.3"]})


def test_https_image_arrives_intact_with_sni(pki: LocalPKI, connections: list[str]) -> None:
    """Same bytes over HTTPS and plain HTTP give the same stored image; SNI carries the URL's hostname."""
    source = noise_rgb(400, 300, seed=7)
    body = encode(source, "JPEG", quality=95)
    assert len(body) > 4 * 16384  # several TLS records and more than one read chunk
    with pki.server(pki.good) as https, LocalHTTPServer() as plain:
        urls = {
            "https": https.image("/good.jpg", body),
            "https_redirect": https.route("/r", Response(302, headers={"Location": "/good.jpg"})),
            "https_ip": f"https://127.0.0.1:{https.port}/good.jpg",  # verified against the IP SAN
            "http": plain.image("/good.jpg", body),
        }
        downloader = Downloader(config(ca_bundle=pki.ca_file, max_bytes=1_000_000), resolver=tls_resolver())
        result = downloader(rows(urls))
        downloader.close()
    assert result.counts == Counter({"ok": 4}), result.failures.to_pylist()
    by_id = {row["sample_id"]: row for row in result.ok.to_pylist()}
    for row in by_id.values():
        assert (row["original_width"], row["original_height"]) == (400, 300)
        assert row["attempts"] == 1
        stored = decoded(row["image"])
        assert stored.size == (row["width"], row["height"]) == (128, 96)
        assert hashlib.sha256(row["image"]).hexdigest() == row["sha256"]
        expected = np.asarray(source.resize(stored.size, Image.Resampling.LANCZOS)).astype(float)
        assert np.abs(np.asarray(stored.convert("RGB")).astype(float) - expected).mean() < 40
    assert len({row["sha256"] for row in by_id.values()}) == 1  # TLS delivered exactly the plain bytes
    assert https.requests["/good.jpg"] == 3 and https.requests["/r"] == 1
    assert Counter(https.sni) == Counter({TLS_HOST: 3, None: 1})  # no SNI for an IP literal (RFC 6066)
    assert https.tls_failures == 0
    assert set(connections) == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("certificate", "trust_test_ca", "why"),
    [
        ("other_host", True, "hostname mismatch"),  # trusted CA, certificate for another name
        ("self_signed", True, "self-signed certificate"),  # right name, nobody trusted vouches for it
        (
            "good",
            False,
            "unable to get local issuer certificate",
        ),  # system store only: the test CA is unknown
    ],
)
def test_https_certificate_failures_are_tls_and_not_retried(
    pki: LocalPKI, certificate: str, trust_test_ca: bool, why: str
) -> None:
    with pki.server(getattr(pki, certificate)) as server:
        url = server.image("/good.jpg", encode(noise_rgb(32, 32), "JPEG"))
        ca_bundle = pki.ca_file if trust_test_ca else None
        downloader = Downloader(config(ca_bundle=ca_bundle, max_retries=3), resolver=tls_resolver())
        result = downloader(rows({"a": url}))
        downloader.close()
        assert result.counts == Counter({"tls": 1})
        failure = result.failures.to_pylist()[0]
        assert failure["attempts"] == 1 and failure["retryable"] is False
        assert "certificate verify failed" in failure["detail"].lower()
        assert why.replace("-", " ") in failure["detail"].lower().replace("-", " ")
        assert server.sni == [TLS_HOST]  # exactly one handshake, aborted by the client
        assert server.requests["/good.jpg"] == 0  # no HTTP request reached the server


def test_https_redirect_to_private_http_is_refused(pki: LocalPKI, connections: list[str]) -> None:
    """Leaving TLS does not leave the address checks: every hop is resolved and checked again."""
    with pki.server(pki.good) as server:
        urls = {
            "private_ip": server.route("/a", Response(302, headers={"Location": "http://10.0.0.1/a.jpg"})),
            "metadata": server.route(
                "/b", Response(301, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
            ),
            "private_name": server.route(
                "/c", Response(307, headers={"Location": "http://internal.test/a.jpg"})
            ),
        }
        downloader = Downloader(config(ca_bundle=pki.ca_file), resolver=tls_resolver())
        result = downloader(rows(urls))
        downloader.close()
    assert result.counts == Counter({"blocked_address": 3})
    assert result.failures["attempts"].to_pylist() == [1, 1, 1]
    assert sorted(server.requests.elements()) == ["/a", "/b", "/c"]
    assert server.sni == [TLS_HOST] * 3
    assert connections == ["127.0.0.1"] * 3  # only the HTTPS hop connected; no redirect target was tried


# --- pure functions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a00:1", False),  # NAT64 form of 10.0.0.1
        ("not an ip", False),
    ],
)
def test_is_public_address(ip: str, public: bool) -> None:
    assert is_public_address(ip) is public


def test_check_url_schemes_and_loopback_switch() -> None:
    no_dns = fake_resolver({})
    assert check_url("ftp://example.org/a.jpg", resolver=no_dns) == "bad_scheme"
    assert check_url("file:///etc/passwd", resolver=no_dns) == "bad_scheme"
    assert check_url("http:///nohost", resolver=no_dns) == "bad_url"
    assert check_url("http://169.254.169.254/latest/", resolver=no_dns) == "blocked_address"
    assert check_url("http://[::1]:8080/", resolver=no_dns) == "blocked_address"
    assert check_url("http://[::1]:8080/", allow_loopback=True, resolver=no_dns) is None
    assert check_url("http://127.3.2.1/", allow_loopback=True, resolver=no_dns) is None
    assert check_url("http://10.0.0.1/", allow_loopback=True, resolver=no_dns) == "blocked_address"
    assert check_url("http://[::ffff:127.0.0.1]/", allow_loopback=True, resolver=no_dns) is None
    assert check_url("https://8.8.8.8/a.jpg", resolver=no_dns) is None  # a check only: nothing is sent
    assert check_url("https://gone.example/a.jpg", resolver=no_dns) == "dns"
    two = fake_resolver({"two.example": ["10.0.0.1", "8.8.4.4"]})
    assert check_url("https://two.example/a.jpg", resolver=two) is None


def test_filter_opted_out_matches_names_and_captions() -> None:
    table = pa.table(
        {
            "sample_id": ["a", "b", "c", "d", "e"],
            "url": ["u"] * 5,
            "caption": [
                "ZOË SALDAÑA at the premiere",
                "Tom Hanksford portrait",
                "x",
                "tom  hanks, smiling",
                "y",
            ],
            "names": [[], ["tom_hanksford"], ["zoe_saldana"], [], None],
        }
    )
    kept, removed = filter_opted_out(table, ["Zoë Saldaña", "Tom Hanks"])
    assert removed["sample_id"].to_pylist() == ["a", "c", "d"]
    assert kept["sample_id"].to_pylist() == ["b", "e"]
    unchanged, nothing = filter_opted_out(table, [])
    assert unchanged.num_rows == 5 and nothing.num_rows == 0
    assert normalise_name("  Zoë-Saldaña ") == normalise_name("zoe_saldana") == "zoe saldana"


def test_ray_style_numpy_batch_is_accepted() -> None:
    batch = {
        "sample_id": np.array(["a", "b"], dtype=object),
        "url": np.array(["ftp://x/1.jpg", "gopher://x/2"], dtype=object),
        "names": np.array([np.array(["p q"], dtype=object), np.array([], dtype=object)], dtype=object),
    }
    table = as_table(batch)
    assert table.column("names").to_pylist() == [["p q"], []]
    downloader = Downloader(config())
    result = downloader(batch)
    downloader.close()
    assert result.counts == Counter({"bad_scheme": 2})


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a past date: retry now


def test_config_section_is_wired() -> None:
    cfg = Config()
    assert cfg.download.allow_loopback is False
    assert {"noai", "noimageai", "noindex"} <= set(cfg.download.disallowed_header_directives)
    assert "opt-out" in cfg.download.user_agent
    with pytest.raises(ValueError):
        DownloadConfig(encode_format="png")

"""Faces-stage throughput on this CPU: each backend batched vs one image per call.

Run: ``python -m bench.faces_bench`` (or ``python -m bench faces``).

- offline (dlib HOG + 5-point + ResNet descriptor, real weights): the 64 real photos of the shared fixtures.
- insightface: the GENERATED stand-in graphs of ``laioncele/testing/onnx_models.py`` (real insightface pre-processing,
  SCRFD decoding/NMS, norm_crop alignment and batched ArcFace calls; the networks themselves are trivial), so
  its numbers measure the pipeline around the models, not SCRFD/ArcFace compute. Real buffalo_l weights are not
  available on this machine.
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "faces"


def _summary(n_images: int, n_faces: int, detect_s: float, embed_s: float, batch_size: int) -> dict[str, Any]:
    total = detect_s + embed_s
    return {
        "batch_size": batch_size,
        "images": n_images,
        "faces": n_faces,
        "seconds": round(total, 3),
        "faces_per_s": round(n_faces / total, 2),
        "images_per_s": round(n_images / total, 2),
        "detect_ms_per_image": round(1000 * detect_s / n_images, 2),
        "embed_ms_per_face": round(1000 * embed_s / max(n_faces, 1), 2),
    }


def _compare(backend, images: list[np.ndarray], batch_size: int) -> dict[str, Any]:
    """Detect + embed each chunk of ``batch_size`` images in one call, then the same images one per call.

    The two modes alternate chunk by chunk so that load from other processes on a shared machine hits both
    alike. Detection is per image in both backends; batching changes the embedding calls.
    """
    times = {"batched": [0.0, 0.0], "one_at_a_time": [0.0, 0.0]}
    n_faces = 0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        for mode, groups in (("batched", [chunk]), ("one_at_a_time", [[image] for image in chunk])):
            for group in groups:
                t0 = time.perf_counter()
                faces = backend.detect(group)
                t1 = time.perf_counter()
                backend.embed(group, faces)
                t2 = time.perf_counter()
                times[mode][0] += t1 - t0
                times[mode][1] += t2 - t1
                if mode == "batched":
                    n_faces += sum(len(f) for f in faces)
    return {
        "batched": _summary(len(images), n_faces, *times["batched"], batch_size),
        "one_at_a_time": _summary(len(images), n_faces, *times["one_at_a_time"], 1),
    }


def bench_offline(batch_size: int = 16) -> dict[str, Any]:
    from PIL import Image

    from laioncele.faces import load_backend

    if not FIXTURES.is_dir():
        return {"skipped": f"needs the shared fixture photos at {FIXTURES}"}
    files = [row["file"] for row in csv.DictReader((FIXTURES / "labels.csv").open(encoding="utf-8"))]
    images = [np.asarray(Image.open(FIXTURES / f).convert("RGB")) for f in files]
    backend = load_backend("offline")
    return {
        "data": f"{len(images)} real photos (shared fixtures, <= 800 px), HOG upsample 1",
        **_compare(backend, images, batch_size),
    }


def bench_insightface(n_images: int = 48, faces_per_image: int = 4, batch_size: int = 16) -> dict[str, Any]:
    from laioncele.faces import load_backend
    from laioncele.testing.onnx_models import draw_face_squares, write_buffalo_like

    with tempfile.TemporaryDirectory() as tmp:
        backend = load_backend("insightface", model_dir=str(write_buffalo_like(Path(tmp) / "buffalo_l")))
        squares = [(128 + 256 * i, 256 + 128 * (i % 2), 64, 255) for i in range(faces_per_image)]
        images = [draw_face_squares((1280, 1280), squares) for _ in range(n_images)]
        backend.analyze(images[:1])  # warm-up: builds the static-shape detector session
        return {
            "data": (
                f"{n_images} synthetic 1280x1280 images x {faces_per_image} faces; GENERATED stand-in ONNX graphs "
                "(pipeline overhead only, not real SCRFD/ArcFace compute)"
            ),
            "providers": backend.providers,
            **_compare(backend, images, batch_size),
        }


def run() -> dict[str, Any]:
    return {"offline": bench_offline(), "insightface_generated_graphs": bench_insightface()}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))

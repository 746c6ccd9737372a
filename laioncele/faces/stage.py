"""The faces stage as a per-batch callable for a Ray actor: bytes in, one row per kept face out.

``FaceStage(config)`` loads the backend once (actor start-up); ``stage(batch)`` takes a column batch with the
sample id and encoded image bytes and returns columns with one row per kept face. An image that yields no kept
face still yields exactly one row, with ``face_index = -1`` and ``status`` set to the reason, so drops survive a
``map_batches`` (count them by ``status``; keep ``status == "ok"`` for the identity stage). Cumulative counts of
drops and fix-ups (grayscale, CMYK, downscaled, ...) are kept in ``stage.counts`` as well.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from laioncele.config import FacesConfig
from laioncele.faces.base import Face, FaceBackend
from laioncele.faces.decode import DecodedImage, ImageRejected, decode_image_detailed
from laioncele.faces.factory import load_backend
from laioncele.io.schema import FACES

log = logging.getLogger(__name__)

OK = "ok"
# Image-level statuses besides "ok": decode.REJECT_REASONS plus these.
NO_FACE = "no_face"  # the detector found nothing
FACES_FILTERED = "faces_filtered"  # faces found, all below min_face_size / min_det_score
CROWD = "crowd"  # more kept faces than max_faces_per_image
BACKEND_ERROR = "backend_error"  # the model failed on this image (isolated by retrying one at a time)


def backend_from_config(config: FacesConfig) -> FaceBackend:
    if config.backend == "insightface":
        return load_backend(
            "insightface",
            model_dir=config.model_dir,
            detector_file=config.detector_file,
            recognizer_file=config.recognizer_file,
            det_size=config.det_size,
            det_thresh=config.min_det_score,
            providers=config.providers,
            recognition_batch_size=config.recognition_batch_size,
            match_threshold=config.match_threshold,
        )
    return load_backend(
        "offline",
        detector=config.offline_detector,
        upsample=config.offline_upsample,
        det_thresh=config.min_det_score,
        match_threshold=config.match_threshold,
    )


def filter_faces(faces: Sequence[Face], scale: float, config: FacesConfig) -> tuple[list[Face], str]:
    """Faces passing the score and size filters (size in original pixels), and the image's status."""
    if not faces:
        return [], NO_FACE
    kept = [
        f for f in faces if f.det_score >= config.min_det_score and f.size / scale >= config.min_face_size
    ]
    if not kept:
        return [], FACES_FILTERED
    if len(kept) > config.max_faces_per_image:
        return [], CROWD
    return kept, OK


@dataclass
class ImageResult:
    sample_id: str
    status: str
    faces: list[Face] = field(default_factory=list)  # original-image coordinates, embeddings set
    n_detected: int = 0
    width: int = 0
    height: int = 0


@dataclass
class DecodedBatch:
    results: list[ImageResult]  # one per input image; decode failures already carry their status
    decoded: dict[int, DecodedImage]  # input position -> decoded image
    notes: Counter[str]  # fix-ups applied while decoding (grayscale, cmyk, downscaled, ...)


class FaceStage:
    """Ray-actor-friendly callable: ``__init__`` loads the models, ``__call__`` maps one batch."""

    def __init__(self, config: FacesConfig | None = None, backend: FaceBackend | None = None) -> None:
        self.config = config or FacesConfig()
        self.backend = backend if backend is not None else backend_from_config(self.config)
        self.counts: Counter[str] = Counter()

    def _detect_isolating_errors(self, images: list[np.ndarray]) -> list[list[Face] | None]:
        try:
            return list(self.backend.detect(images))
        except Exception:  # one poisoned image must not lose the batch: retry one at a time
            log.exception("face detection failed on a batch of %d; retrying images one by one", len(images))
        results: list[list[Face] | None] = []
        for image in images:
            try:
                results.append(self.backend.detect([image])[0])
            except Exception:
                log.exception("face detection failed on one image")
                results.append(None)
        return results

    def decode(self, sample_ids: Sequence[str], data: Sequence[bytes | None]) -> DecodedBatch:
        """CPU half of a batch: decode, fix up and downscale every image (thread-safe, no model involved), so a
        pool of decode threads can prepare the next batch while the model runs on this one."""
        cfg = self.config
        results = [ImageResult(str(sid), OK) for sid in sample_ids]
        decoded: dict[int, DecodedImage] = {}
        notes: Counter[str] = Counter()
        for i, blob in enumerate(data):
            try:
                image = decode_image_detailed(
                    blob or b"",
                    max_side=cfg.max_image_side,
                    min_side=cfg.min_image_side,
                    max_pixels=cfg.max_pixels,
                )
            except ImageRejected as exc:
                results[i].status = exc.reason
                continue
            decoded[i] = image
            results[i].width, results[i].height = image.original_size
            notes.update(image.notes)
        return DecodedBatch(results, decoded, notes)

    def analyze_decoded(self, batch: DecodedBatch) -> list[ImageResult]:
        """Model half of a batch: detect, filter, embed (batched across the batch's images)."""
        cfg = self.config
        results, decoded = batch.results, batch.decoded
        self.counts.update(batch.notes)
        order = list(decoded)
        detections = self._detect_isolating_errors([decoded[i].rgb for i in order])
        to_embed: list[int] = []
        kept_per_image: list[list[Face]] = []
        for i, faces in zip(order, detections, strict=True):
            if faces is None:
                results[i].status = BACKEND_ERROR
                continue
            results[i].n_detected = len(faces)
            kept, results[i].status = filter_faces(faces, decoded[i].scale, cfg)
            if kept:
                to_embed.append(i)
                kept_per_image.append(kept)
        if to_embed:
            embedded = self.backend.embed([decoded[i].rgb for i in to_embed], kept_per_image)
            for i, faces in zip(to_embed, embedded, strict=True):
                results[i].faces = [face.scaled(1.0 / decoded[i].scale) for face in faces]
        self.counts.update(r.status for r in results)
        self.counts["faces"] += sum(len(r.faces) for r in results)
        return results

    def analyze_images(self, sample_ids: Sequence[str], data: Sequence[bytes | None]) -> list[ImageResult]:
        return self.analyze_decoded(self.decode(sample_ids, data))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.analyze_images(batch[self.config.id_column], batch[self.config.image_column])
        return results_to_columns(results, self.backend)


def results_to_columns(results: Sequence[ImageResult], backend: FaceBackend) -> dict[str, np.ndarray]:
    """One row per kept face, plus one ``face_index = -1`` row per image without kept faces."""
    dim = backend.embedding_dim
    rows: list[tuple[ImageResult, int, Face | None]] = []
    for result in results:
        if result.faces:
            rows += [(result, index, face) for index, face in enumerate(result.faces)]
        else:
            rows.append((result, -1, None))
    n = len(rows)
    bbox = np.zeros((n, 4), np.float32)
    landmarks = np.zeros((n, 5, 2), np.float32)
    embedding = np.zeros((n, dim), np.float32)
    det_score = np.zeros(n, np.float32)
    for row, (_, _, face) in enumerate(rows):
        if face is not None:
            bbox[row], landmarks[row], det_score[row], embedding[row] = (
                face.bbox,
                face.landmarks,
                face.det_score,
                face.embedding,
            )
    return {
        "sample_id": np.array([r.sample_id for r, _, _ in rows], dtype=object),
        "face_index": np.array([i for _, i, _ in rows], dtype=np.int32),
        "status": np.array([r.status for r, _, _ in rows], dtype=object),
        "bbox": bbox,
        "landmarks": landmarks,
        "det_score": det_score,
        "embedding": embedding,
        "n_faces_detected": np.array([r.n_detected for r, _, _ in rows], dtype=np.int32),
        "n_faces_kept": np.array([len(r.faces) for r, _, _ in rows], dtype=np.int32),
        "image_width": np.array([r.width for r, _, _ in rows], dtype=np.int32),
        "image_height": np.array([r.height for r, _, _ in rows], dtype=np.int32),
        "backend": np.array([backend.name] * n, dtype=object),
        "backend_version": np.array([backend.version] * n, dtype=object),
    }


def columns_to_table(columns: dict[str, np.ndarray]) -> pa.Table:
    """The stage's columns as a ``schema.FACES`` table; geometry and embedding are null on status rows."""
    is_face = np.asarray(columns["face_index"]) >= 0
    n = len(is_face)

    def nullable_lists(values: np.ndarray, width: int | None) -> pa.Array:
        rows = np.asarray(values, dtype=np.float32).reshape(n, -1) if n else np.zeros((0, 0), np.float32)
        offsets = pa.array(np.arange(n + 1, dtype=np.int32) * rows.shape[1])
        lists = pa.ListArray.from_arrays(
            offsets, pa.array(rows.ravel(), pa.float32()), mask=pa.array(~is_face)
        )
        return lists.cast(pa.list_(pa.float32(), width)) if width else lists

    arrays = {
        "sample_id": pa.array(columns["sample_id"], pa.string()),
        "face_index": pa.array(columns["face_index"], pa.int32()),
        "status": pa.array(columns["status"], pa.string()),
        "bbox": nullable_lists(columns["bbox"], 4),
        "landmarks": nullable_lists(columns["landmarks"], 10),
        "det_score": pa.array(np.asarray(columns["det_score"], np.float32), mask=~is_face),
        "embedding": nullable_lists(columns["embedding"], None),
    }
    for name in ("n_faces_detected", "n_faces_kept", "image_width", "image_height"):
        arrays[name] = pa.array(columns[name], pa.int32())
    for name in ("backend", "backend_version"):
        arrays[name] = pa.array(columns[name], pa.string())
    # The sample's caption names and image hash: null here, filled from the download rows by the faces stage
    # (``laioncele.faces.sample_names.with_sample_names``); the detector sees only the image.
    for name in ("names", "image_sha256"):
        arrays[name] = pa.nulls(n, FACES.field(name).type)
    return pa.Table.from_arrays([arrays[f.name] for f in FACES], schema=FACES)

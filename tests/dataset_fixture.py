"""A small synthetic run directory in the real on-disk format, with its ground truth, for stats/report tests.

Every stage directory is written by ``laioncele.io.shards.write_shards`` with the stage's real schema and known
rows_in / rows / drops; ``dataset/`` holds real JPEG bytes (a coloured ellipse "face" at the recorded bbox),
unit face embeddings and their similarity to the identity centroid. One identity is deliberately impure (half
its faces are another person), one image has undecodable bytes, and captions/names carry HTML to catch
unescaped output.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from laioncele.io import schema
from laioncele.io.shards import write_shards

HOSTILE_CAPTION = "<script>alert('caption')</script> & <img src=x onerror=alert(1)> photo"
HOSTILE_NAME = '<b>Eve</b> "Mallory" & Co'
EMBEDDING_DIM = 16
NUM_TOKENS, TOKEN_DIM = 8, 4


@dataclass(frozen=True)
class StageTruth:
    rows_in: int
    rows: int
    drops: dict[str, int]


@dataclass
class FakeDataset:
    run_dir: Path
    images_per_identity: dict[str, int]  # identity_id -> images in dataset/images
    stages: dict[str, StageTruth]  # funnel truth, run order, dataset tables last ("dataset/images")
    languages: Counter[str | None] = field(default_factory=Counter)
    impure_identity: str = ""
    hostile_identity: str = ""
    corrupt_images: list[tuple[str, int]] = field(
        default_factory=list
    )  # (identity_id, index in similarities)
    similarities: dict[str, list[float]] = field(default_factory=dict)  # identity_id -> faces' similarities


def _filler_column(field_: pa.Field, n: int) -> pa.Array:
    """Schema-valid placeholder values for an upstream stage's column (only counts are under test there)."""
    t = field_.type
    if pa.types.is_string(t):
        return pa.array([f"{field_.name}-{i}" for i in range(n)], t)
    if pa.types.is_integer(t):
        return pa.array(np.arange(n), t)
    if pa.types.is_floating(t):
        return pa.array(np.full(n, 0.5, dtype=t.to_pandas_dtype()), t)
    if pa.types.is_boolean(t):
        return pa.array([False] * n, t)
    if pa.types.is_binary(t):
        return pa.array([b""] * n, t)
    if pa.types.is_fixed_size_list(t):
        values = _filler_column(pa.field("v", t.value_type), n * t.list_size)
        return pa.FixedSizeListArray.from_arrays(values, t.list_size)
    if pa.types.is_list(t):
        values = _filler_column(pa.field("v", t.value_type), 2 * n)
        return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2), pa.int32()), values)
    raise TypeError(f"no filler for {t}")


def _write_stage(
    run_dir: Path, name: str, stage_schema: pa.Schema, truth: StageTruth, upstream: str | None
) -> None:
    table = pa.Table.from_arrays([_filler_column(f, truth.rows) for f in stage_schema], schema=stage_schema)
    write_shards(
        table,
        run_dir / name,
        schema=stage_schema,
        stage=name,
        config_hash=f"hash-{name}",
        rows_in=truth.rows_in,
        drops=truth.drops,
        rows_per_shard=max(truth.rows // 2, 1),
        extra={"upstream": upstream},
    )


def _face_jpeg(rng: np.random.Generator, color: tuple[int, int, int]) -> tuple[bytes, list[float], int, int]:
    width, height = int(rng.integers(80, 121)), int(rng.integers(80, 121))
    image = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 60, 3)))
    x1, y1 = float(rng.integers(5, width // 3)), float(rng.integers(5, height // 3))
    x2, y2 = x1 + width / 2, y1 + height / 2
    ImageDraw.Draw(image).ellipse([x1, y1, x2, y2], fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), [x1, y1, x2, y2], width, height


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def build_fake_dataset(root: Path, n_identities: int = 6, seed: int = 0) -> FakeDataset:
    """Write ``root/<run>`` with all eight stage directories and ``dataset/``; return it with its truth."""
    if n_identities < 3:
        raise ValueError("the fake dataset needs at least 3 identities (one impure, one hostile)")
    rng = np.random.default_rng(seed)
    run_dir = Path(root) / "fake_run"
    truth = FakeDataset(run_dir=run_dir, images_per_identity={}, stages={})

    ids = [f"person_{i:02d}" for i in range(n_identities)]
    names = [f"Person {i}" for i in range(n_identities)]
    truth.impure_identity, truth.hostile_identity = ids[1], ids[2]
    names[2] = HOSTILE_NAME
    counts = [int(c) for c in rng.integers(5, 13, n_identities)]
    truth.images_per_identity = dict(zip(ids, counts, strict=True))
    n_images = sum(counts)

    stage_truth = {
        "ingest": StageTruth(1000, 980, {"caption_too_long": 7, "empty_caption": 13}),
        "ner": StageTruth(980, 300, {"no_person": 680}),
        "names": StageTruth(980, 340, {"no_name": 640}),
        "candidates": StageTruth(340, 200, {"rare_name": 120, "opt_out": 20}),
        "download": StageTruth(200, 150, {"http_404": 30, "timeout": 12, "noai_header": 8}),
        "faces": StageTruth(150, 170, {"no_face": 20, "too_small": 5}),
        "identities": StageTruth(170, n_identities, {"name_too_few_images": 40, "no_matching_face": 12}),
        "targets": StageTruth(n_identities, n_identities, {}),
    }
    stage_schemas = {
        "ingest": schema.INGEST,
        "ner": schema.NAMES_NER,
        "names": schema.NAMES_FOUND,
        "candidates": schema.NAMES_SAMPLES,
        "download": schema.DOWNLOAD,
        "faces": schema.FACES,
        "identities": schema.IDENTITIES,
        "targets": schema.NAME_TARGETS,
    }
    upstream = None
    for name, stage in stage_truth.items():
        _write_stage(run_dir, name, stage_schemas[name], stage, upstream)
        upstream = name

    # ---- dataset/images and dataset/identities
    languages = ["en", "de", "fr", None]
    image_cols: dict[str, list] = {k: [] for k in ("sample_id", "identity_id", "url", "caption", "image")}
    image_cols.update(
        {k: [] for k in ("width", "height", "bbox", "face_embedding", "similarity", "language", "license")}
    )
    identity_rows = []
    for i, (iid, name, count) in enumerate(zip(ids, names, counts, strict=True)):
        person = _unit(rng.normal(size=EMBEDDING_DIM))
        other = _unit(rng.normal(size=EMBEDDING_DIM))
        faces = []
        for j in range(count):
            source = other if (iid == truth.impure_identity and j % 2 == 1) else person
            faces.append(_unit(source + 0.25 * rng.normal(size=EMBEDDING_DIM)))
        faces_arr = np.stack(faces).astype(np.float32)
        centroid = _unit(faces_arr.mean(axis=0))
        sims = (faces_arr @ centroid).astype(np.float32)
        truth.similarities[iid] = [float(s) for s in sims]
        color = tuple(int(c) for c in rng.integers(120, 256, 3))
        for j in range(count):
            sample_id = f"{i:02d}{j:02d}{int(rng.integers(0, 2**47)):012x}"
            jpeg, bbox, width, height = _face_jpeg(rng, color)
            if i == 0 and j == 0:
                jpeg = b"\xff\xd8 not really a jpeg"
                truth.corrupt_images.append((iid, j))
            language = languages[int(rng.integers(0, len(languages)))]
            truth.languages[language] += 1
            caption = HOSTILE_CAPTION if (i == 2 and j == 0) else f"{name} at an event, photo {j}"
            for key, value in (
                ("sample_id", sample_id),
                ("identity_id", iid),
                ("url", f"https://img.example/{sample_id}.jpg"),
                ("caption", caption),
                ("image", jpeg),
                ("width", width),
                ("height", height),
                ("bbox", bbox),
                ("face_embedding", faces_arr[j].tolist()),
                ("similarity", float(sims[j])),
                ("language", language),
                ("license", "?" if j % 2 else "CC-BY-4.0"),  # LAION-400M's LICENSE values: mostly "?"
            ):
                image_cols[key].append(value)
        identity_rows.append(
            {
                "identity_id": iid,
                "name": name,
                "aliases": [name],
                "n_images": count,
                "num_tokens": NUM_TOKENS,
                "embedding_dim": TOKEN_DIM,
                "name_embedding": rng.normal(size=NUM_TOKENS * TOKEN_DIM).astype(np.float16),
                "pooled_embedding": rng.normal(size=TOKEN_DIM).astype(np.float16),
                "centroid": centroid.astype(np.float32),
                "mean_similarity": float(sims.mean()),
                "min_similarity": float(sims.min()),
                "runner_up_share": 0.45 if iid == truth.impure_identity else float(rng.uniform(0, 0.1)),
                "face_backend": "offline",
            }
        )
    images = schema.conform(pa.table(image_cols), schema.DATASET_IMAGES)
    identities = pa.Table.from_pylist(identity_rows, schema=schema.DATASET_IDENTITIES)
    dataset = run_dir / "dataset"
    ident_manifest = write_shards(
        identities, dataset / "identities", schema=schema.DATASET_IDENTITIES, config_hash="hash-dataset"
    )
    image_manifest = write_shards(
        images,
        dataset / "images",
        schema=schema.DATASET_IMAGES,
        config_hash="hash-dataset",
        rows_per_shard=16,
    )
    truth.stages = dict(stage_truth)
    truth.stages["dataset/identities"] = StageTruth(n_identities, n_identities, {})
    truth.stages["dataset/images"] = StageTruth(n_images, n_images, {})
    mean_embedding = np.stack([np.asarray(r["name_embedding"], np.float32) for r in identity_rows]).mean(
        axis=0
    )
    np.save(dataset / "mean_name_embedding.npy", mean_embedding.reshape(NUM_TOKENS, TOKEN_DIM))
    top = {
        "counts": {"identities": n_identities, "images": n_images},
        "checksums": {
            "identities": [s["sha256"] for s in ident_manifest["shards"]],
            "images": [s["sha256"] for s in image_manifest["shards"]],
        },
        "config": {"identity": {"min_images": 5}},
        "text_encoder": {"source": "tiny-test-encoder"},
    }
    (dataset / "manifest.json").write_text(json.dumps(top, indent=2))
    return truth

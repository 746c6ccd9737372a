"""A small synthetic LaionCele dataset in the real shard format, for tests and benchmarks.

Each identity has its own face colour and stripe pattern; its name embedding is a fixed random projection of
its one-hot vector. The target is thus a learnable function of the face crop, and nothing else: a model that
learns it must look at the face box (the background is noise and the face moves).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from laioncele.io.schema import DATASET_IDENTITIES, DATASET_IMAGES
from laioncele.io.shards import write_shards


def _face_image(
    rng: np.random.Generator, colour: np.ndarray, period: int, size: int
) -> tuple[bytes, list[float]]:
    pixels = 128 + rng.normal(0, 12, size=(size, size, 3))  # plain grey background, noisy
    side = int(rng.integers(size * 3 // 10, size * 9 // 20))
    room = int(0.4 * side)  # keep a margin of background around the face inside the image
    x1, y1 = (int(v) for v in rng.integers(room, size - side - room + 1, size=2))
    yy = np.arange(side)[:, None]
    stripes = ((yy // period) % 2).astype(np.float32)[..., None]  # horizontal stripes, identity's period
    face = colour[None, None, :] * (0.6 + 0.4 * stripes) + rng.normal(0, 6, size=(side, side, 3))
    pixels[y1 : y1 + side, x1 : x1 + side] = face
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), [float(x1), float(y1), float(x1 + side), float(y1 + side)]


def write_synthetic_dataset(
    out_dir: str | Path,
    n_identities: int = 8,
    images_per_identity: int = 12,
    num_tokens: int = 8,
    embedding_dim: int = 16,
    image_size: int = 64,
    seed: int = 0,
    rows_per_shard: int = 40,
) -> Path:
    """Write ``identities/``, ``images/`` and ``mean_name_embedding.npy`` under ``out_dir``; returns it."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    projection = rng.normal(0, 1, size=(n_identities, num_tokens * embedding_dim)).astype(np.float32)
    targets = projection.astype(np.float16)  # one-hot @ projection: row i is identity i's target
    colours = rng.uniform(20, 235, size=(n_identities, 3))
    periods = rng.integers(2, 6, size=n_identities)
    ids = [f"person_{i:03d}" for i in range(n_identities)]
    face_dim = 8
    identities = pa.table(
        {
            "identity_id": ids,
            "name": [f"Person {i}" for i in range(n_identities)],
            "aliases": [[f"Person {i}"] for i in range(n_identities)],
            "n_images": pa.array([images_per_identity] * n_identities, pa.int32()),
            "num_tokens": pa.array([num_tokens] * n_identities, pa.int32()),
            "embedding_dim": pa.array([embedding_dim] * n_identities, pa.int32()),
            "name_embedding": pa.array([list(t) for t in targets], pa.list_(pa.float16())),
            "pooled_embedding": pa.array([list(t[:embedding_dim]) for t in targets], pa.list_(pa.float16())),
            "centroid": pa.array([[1.0] + [0.0] * (face_dim - 1)] * n_identities, pa.list_(pa.float32())),
            "mean_similarity": pa.array([0.8] * n_identities, pa.float32()),
            "min_similarity": pa.array([0.6] * n_identities, pa.float32()),
            "runner_up_share": pa.array([0.0] * n_identities, pa.float32()),
            "face_backend": ["synthetic"] * n_identities,
        },
        schema=DATASET_IDENTITIES,
    )
    columns: dict[str, list] = {k: [] for k in DATASET_IMAGES.names}
    for i, identity_id in enumerate(ids):
        for j in range(images_per_identity):
            data, bbox = _face_image(rng, colours[i], int(periods[i]), image_size)
            columns["sample_id"].append(f"{i:03d}{j:05d}")
            columns["identity_id"].append(identity_id)
            columns["url"].append(f"https://example.invalid/{i}/{j}.jpg")
            columns["caption"].append(f"Person {i} at an event")
            columns["image"].append(data)
            columns["width"].append(image_size)
            columns["height"].append(image_size)
            columns["bbox"].append(bbox)
            columns["landmarks"].append(None)
            columns["face_embedding"].append([1.0] + [0.0] * (face_dim - 1))
            columns["similarity"].append(0.8)
            columns["language"].append("en")
            columns["license"].append(None)
    images = pa.table(columns, schema=DATASET_IMAGES)
    write_shards(identities, out_dir / "identities", schema=DATASET_IDENTITIES)
    write_shards(images, out_dir / "images", schema=DATASET_IMAGES, rows_per_shard=rows_per_shard)
    np.save(out_dir / "mean_name_embedding.npy", projection.mean(axis=0).reshape(num_tokens, embedding_dim))
    return out_dir

"""The LaionCele dataset as training examples: name targets per identity, face crops per image, splits.

The dataset directory holds ``identities/`` and ``images/`` (stage directories, see ``laioncele.io.shards``) and
``mean_name_embedding.npy``. Bad rows are dropped and counted by reason, never fatal.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from laioncele.io.shards import load_manifest, read_shard, read_shards

SPLIT_TRAIN, SPLIT_VAL_IMAGE, SPLIT_VAL_IDENTITY = 0, 1, 2
SPLIT_NAMES = {SPLIT_TRAIN: "train", SPLIT_VAL_IMAGE: "val_image", SPLIT_VAL_IDENTITY: "val_identity"}
IMAGE_COLUMNS = ["sample_id", "identity_id", "image", "bbox"]
MEAN_EMBEDDING_FILE = "mean_name_embedding.npy"


class DatasetMissingError(FileNotFoundError):
    """The LaionCele dataset directory (or one of its parts) is not there: build it first."""


@dataclass
class Identities:
    """Name targets of every usable identity; row i of ``targets`` is identity ``ids[i]``."""

    ids: list[str]
    names: list[str]
    targets: np.ndarray  # [n_identities, num_tokens, embedding_dim] float32
    drops: Counter = field(default_factory=Counter)

    @property
    def index(self) -> dict[str, int]:
        return {identity_id: i for i, identity_id in enumerate(self.ids)}

    @property
    def num_tokens(self) -> int:
        return int(self.targets.shape[1])

    @property
    def embedding_dim(self) -> int:
        return int(self.targets.shape[2])


def require_dataset(dataset_dir: str | Path) -> Path:
    """Fail early with an actionable message when the dataset is absent or unfinished."""
    dataset_dir = Path(dataset_dir)
    for part in ("identities", "images"):
        if not (dataset_dir / part / "manifest.json").is_file():
            raise DatasetMissingError(
                f"no finished LaionCele dataset at {dataset_dir} ({part}/manifest.json is missing): "
                "build it first with `make build-dataset`, or set training.dataset_dir"
            )
    return dataset_dir


def load_identities(dataset_dir: str | Path) -> Identities:
    """Read every identity's name embedding (float16 in the shards) as float32 [n, num_tokens, D]."""
    table = read_shards(
        Path(dataset_dir) / "identities", columns=["identity_id", "name", "num_tokens", "embedding_dim"]
    )
    embeddings = read_shards(Path(dataset_dir) / "identities", columns=["name_embedding"]).column(0)
    drops: Counter = Counter()
    if table.num_rows == 0:
        raise DatasetMissingError(f"{dataset_dir}/identities has no identities to train on")
    shapes = Counter(zip(table["num_tokens"].to_pylist(), table["embedding_dim"].to_pylist(), strict=True))
    num_tokens, dim = shapes.most_common(1)[0][0]
    ids, names, rows = [], [], []
    seen: set[str] = set()
    for i, (identity_id, name, t, d) in enumerate(
        zip(
            table["identity_id"].to_pylist(),
            table["name"].to_pylist(),
            table["num_tokens"].to_pylist(),
            table["embedding_dim"].to_pylist(),
            strict=True,
        )
    ):
        if (t, d) != (num_tokens, dim):
            drops["identity_shape_mismatch"] += 1
            continue
        if identity_id in seen:
            drops["identity_duplicate"] += 1
            continue
        values = embeddings[i].values
        if len(values) != num_tokens * dim:
            drops["identity_bad_embedding_length"] += 1
            continue
        vector = values.to_numpy(zero_copy_only=False).astype(np.float32)
        if not np.isfinite(vector).all():
            drops["identity_non_finite_embedding"] += 1
            continue
        seen.add(identity_id)
        ids.append(identity_id)
        names.append(name)
        rows.append(vector.reshape(num_tokens, dim))
    if not rows:
        raise DatasetMissingError(f"{dataset_dir}/identities has no usable identity ({dict(drops)})")
    return Identities(ids=ids, names=names, targets=np.stack(rows), drops=drops)


def load_mean_embedding(dataset_dir: str | Path, identities: Identities) -> np.ndarray:
    """The dataset's mean name embedding (F_mean); recomputed from the targets when the file is absent."""
    path = Path(dataset_dir) / MEAN_EMBEDDING_FILE
    if path.is_file():
        mean = np.load(path).astype(np.float32)
        if mean.shape == identities.targets.shape[1:]:
            return mean
    return identities.targets.mean(axis=0)


def image_shard_records(dataset_dir: str | Path) -> list[dict]:
    """Manifest records of the image shards: the unit of work of the feature-caching pass."""
    return list(load_manifest(Path(dataset_dir) / "images")["shards"])


def read_image_shard(dataset_dir: str | Path, record: dict) -> pa.Table:
    return read_shard(Path(dataset_dir) / "images", record).select(IMAGE_COLUMNS)


def read_image_index(dataset_dir: str | Path) -> pa.Table:
    """sample_id + identity_id of every image (no pixels): enough to split and to join cached features."""
    return read_shards(Path(dataset_dir) / "images", columns=["sample_id", "identity_id"])


def _unit_hash(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(
    identity_ids: list[str],
    sample_ids: list[str],
    val_identity_fraction: float,
    val_image_fraction: float,
    seed: int = 0,
) -> np.ndarray:
    """Split per image: held-out identities (all their images) and held-out images of the other identities.

    Hash-based, so an image keeps its split when the dataset grows; every identity left in training keeps at
    least one training image.
    """
    split = np.full(len(sample_ids), SPLIT_TRAIN, dtype=np.int8)
    held_out = {i for i in set(identity_ids) if _unit_hash("identity:" + i, seed) < val_identity_fraction}
    first_train: dict[str, int] = {}
    for row, (identity_id, sample_id) in enumerate(zip(identity_ids, sample_ids, strict=True)):
        if identity_id in held_out:
            split[row] = SPLIT_VAL_IDENTITY
        elif _unit_hash("image:" + sample_id, seed) < val_image_fraction:
            split[row] = SPLIT_VAL_IMAGE
        else:
            first_train.setdefault(identity_id, row)
    for row, identity_id in enumerate(identity_ids):
        if split[row] == SPLIT_VAL_IMAGE and identity_id not in first_train:
            split[row] = SPLIT_TRAIN  # an identity must be seen in training to be a "seen identity"
            first_train[identity_id] = row
    return split


def decode_image(data: bytes) -> Image.Image | None:
    """Decode encoded image bytes to RGB, or None when they are not a readable image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def valid_bbox(bbox: list[float] | None) -> bool:
    return (
        bbox is not None
        and len(bbox) == 4
        and all(np.isfinite(bbox))
        and bbox[2] > bbox[0]
        and bbox[3] > bbox[1]
    )


def face_crop(
    image: Image.Image,
    bbox: list[float],
    margin: float,
    rng: np.random.Generator | None = None,
) -> Image.Image:
    """A square crop centred on the face box, grown by ``margin`` of its side on every side.

    Parts outside the image are filled black (keeps the face centred and its scale fixed). With ``rng`` the crop
    is jittered (scale +-10%, shift +-10% of the side) and flipped half the time: the end-to-end augmentation.
    """
    x1, y1, x2, y2 = (float(v) for v in bbox)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    flip = False
    if rng is not None:
        side *= float(rng.uniform(0.9, 1.1))
        cx += float(rng.uniform(-0.1, 0.1)) * side
        cy += float(rng.uniform(-0.1, 0.1)) * side
        flip = bool(rng.random() < 0.5)
    half = max(side / 2, 1.0)
    box = tuple(round(v) for v in (cx - half, cy - half, cx + half, cy + half))
    crop = image.crop(box)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else crop


def augmentation_rng(seed: int, epoch: int, sample_index: int) -> np.random.Generator:
    """Stateless per-sample randomness: a resumed run draws exactly the augmentations of an uninterrupted one."""
    return np.random.default_rng([seed, epoch, sample_index])

"""The examples one run trains on, and how example rows become model inputs on the training device.

Data order is deterministic: epoch e is a permutation seeded by (seed, e) and a step's position in it is
``step % steps_per_epoch``; with W workers each step takes W * batch_size samples and worker r takes the r-th slice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from encoder_training.data import (
    Identities,
    assign_splits,
    augmentation_rng,
    decode_image,
    face_crop,
    load_identities,
    load_mean_embedding,
    valid_bbox,
)
from encoder_training.features import read_features
from encoder_training.model import NameEncoder
from encoder_training.plan import TrainPaths
from laioncele.config import TrainingConfig
from laioncele.io.shards import read_shards

# A host table goes to the GPU whole when under this share of its free memory.
DEVICE_TABLE_FREE_FRACTION = 0.25


@dataclass
class Examples:
    """Per-image inputs of one run: cached features or encoded images, identity row and split of each."""

    identities: Identities
    mean: np.ndarray
    identity_index: np.ndarray  # [n] row in identities.targets
    split: np.ndarray  # [n] SPLIT_*
    features: np.ndarray | None  # [n, F] (cached mode)
    images: list[bytes] | None  # encoded bytes (end-to-end mode)
    bboxes: list[list[float]] | None
    drops: Counter

    def rows(self, split: int) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def load_examples(tc: TrainingConfig, paths: TrainPaths, mode: str) -> Examples:
    identities = load_identities(paths.dataset_dir)
    index = identities.index
    drops: Counter = Counter(identities.drops)
    if mode == "cached":
        sample_ids, identity_ids, features = read_features(paths.features)
        images = bboxes = None
    else:
        table = read_shards(Path(paths.dataset_dir) / "images", columns=["sample_id", "identity_id", "bbox"])
        good = [i for i, b in enumerate(table["bbox"].to_pylist()) if valid_bbox(b)]
        drops["bad_bbox"] += table.num_rows - len(good)
        table = table.take(pa.array(good, pa.int64()))
        sample_ids, identity_ids = table["sample_id"].to_pylist(), table["identity_id"].to_pylist()
        bboxes = table["bbox"].to_pylist()
        image_column = read_shards(Path(paths.dataset_dir) / "images", columns=["image"])["image"]
        images = [image_column[i].as_py() for i in good]
        features = None
    keep = [i for i, identity_id in enumerate(identity_ids) if identity_id in index]
    drops["image_unknown_identity"] += len(identity_ids) - len(keep)
    if not keep:
        raise ValueError(f"no training image matches an identity in {paths.dataset_dir} ({dict(drops)})")
    sample_ids = [sample_ids[i] for i in keep]
    identity_ids = [identity_ids[i] for i in keep]
    split = assign_splits(
        identity_ids, sample_ids, tc.val_identity_fraction, tc.val_image_fraction, seed=tc.seed
    )
    return Examples(
        identities=identities,
        mean=load_mean_embedding(paths.dataset_dir, identities),
        identity_index=np.asarray([index[i] for i in identity_ids], dtype=np.int64),
        split=split,
        # The whole cache usually survives: indexing would copy the biggest array training holds.
        features=None if features is None else (features if len(keep) == len(features) else features[keep]),
        images=None if images is None else [images[i] for i in keep],
        bboxes=None if bboxes is None else [bboxes[i] for i in keep],
        drops=drops,
    )


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, 1_000_003, epoch]).permutation(n)


def batch_rows(
    train_rows: np.ndarray,
    seed: int,
    step: int,
    steps_per_epoch: int,
    global_batch: int,
    rank: int,
    batch: int,
) -> tuple[int, np.ndarray]:
    """(epoch, example rows of this worker's slice) for an optimizer step; the last batch of an epoch wraps."""
    epoch, position = divmod(step, steps_per_epoch)
    perm = epoch_permutation(seed, epoch, len(train_rows))
    picks = (position * global_batch + rank * batch + np.arange(batch)) % len(train_rows)
    return epoch, train_rows[perm[picks]]


class RowGatherer:
    """Rows of a host array as a tensor on the training device, without a pageable copy per step.

    On CUDA the whole array moves to the GPU once when it takes under ``DEVICE_TABLE_FREE_FRACTION`` of the free
    memory (rows are then gathered there); otherwise each step's rows go through pinned memory with a
    non-blocking copy. On CPU it is a plain gather. Values are identical either way.
    """

    def __init__(self, array: np.ndarray, device: torch.device) -> None:
        self.array, self.device = array, device
        self.on_device: torch.Tensor | None = None
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if array.nbytes < DEVICE_TABLE_FREE_FRACTION * free:
                self.on_device = torch.from_numpy(np.ascontiguousarray(array)).to(device)

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        if self.on_device is not None:
            return self.on_device[torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)]
        gathered = torch.from_numpy(self.array[rows])
        if self.device.type == "cuda":
            return gathered.pin_memory().to(self.device, non_blocking=True)
        return gathered.to(self.device)


class InputBuilder:
    """Turns example rows into the model's input: cached feature rows, or decoded + cropped + processed images."""

    def __init__(
        self, examples: Examples, model: NameEncoder, tc: TrainingConfig, device: torch.device
    ) -> None:
        self.examples, self.model, self.tc, self.device = examples, model, tc, device
        self.drops: Counter = Counter()
        self.feature_rows = RowGatherer(examples.features, device) if examples.features is not None else None

    def __call__(
        self, rows: np.ndarray, epoch: int | None = None
    ) -> tuple[torch.Tensor | list[torch.Tensor], np.ndarray]:
        """(input, rows actually used): undecodable images are skipped and counted."""
        ex = self.examples
        if self.feature_rows is not None:
            return self.feature_rows(rows), rows
        crops, used = [], []
        for row in rows:
            image = decode_image(ex.images[row])
            if image is None:
                self.drops["undecodable_image"] += 1
                continue
            rng = (
                augmentation_rng(self.tc.seed, epoch, int(row))
                if (self.tc.augment and epoch is not None)
                else None
            )
            crops.append(face_crop(image, ex.bboxes[row], self.tc.crop_margin, rng))
            used.append(row)
        used_rows = np.asarray(used, dtype=np.int64)
        if not crops:
            return [], used_rows
        pixels = [p.to(self.device) for p in self.model.features.pixel_values(crops)]
        return pixels, used_rows

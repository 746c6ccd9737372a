"""The face-analysis backend interface: detect faces, then embed them, in batches of decoded RGB images.

Detection and embedding are separate calls so the stage can drop filtered faces (too small, crowds) before
paying for their embeddings; ``analyze`` chains the two for callers that want everything.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

LANDMARK_ORDER = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")  # image left/right


@dataclass
class Face:
    """One detected face. ``face["bbox"]`` works as well as ``face.bbox``.

    bbox: (x1, y1, x2, y2) pixels; landmarks: 5x2 pixels in ``LANDMARK_ORDER``; det_score: 0..1;
    embedding: L2-normalised float32 vector, None until the backend's ``embed`` ran.
    """

    bbox: np.ndarray
    landmarks: np.ndarray
    det_score: float
    embedding: np.ndarray | None = None

    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    @property
    def size(self) -> float:
        """Shorter side of the box: what the minimum-face-size filter compares."""
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by ``factor`` (boxes map back with 1/scale)."""
        return dataclasses.replace(self, bbox=self.bbox * factor, landmarks=self.landmarks * factor)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(l2_normalise(a), l2_normalise(b)))


class FaceBackend(ABC):
    """A detector + recogniser pair. Images are RGB uint8 HxWx3 arrays."""

    name: str
    version: str
    embedding_dim: int
    match_threshold: float  # cosine similarity of L2-normalised embeddings at or above which: same person

    @abstractmethod
    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per image, best score first, without embeddings."""

    @abstractmethod
    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Sequence[Face]]) -> list[list[Face]]:
        """The given faces with ``embedding`` set, computed in as few model calls as the backend allows."""

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        images = [check_rgb(image) for image in images]
        return self.embed(images, self.detect(images))

    def same_person(self, a: np.ndarray, b: np.ndarray) -> bool:
        return cosine_similarity(a, b) >= self.match_threshold


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Refuse anything but HxWx3 uint8 early, with a message, instead of deep inside a native library."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got dtype {image.dtype} shape {image.shape}")
    return np.ascontiguousarray(image)

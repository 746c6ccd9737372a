"""Face analysis for the faces stage: backends (insightface, offline dlib), image decoding, the batch stage."""

from __future__ import annotations

from laioncele.faces.base import (
    LANDMARK_ORDER,
    Face,
    FaceBackend,
    cosine_similarity,
    l2_normalise,
)
from laioncele.faces.decode import (
    REJECT_REASONS,
    DecodedImage,
    ImageRejected,
    decode_image,
    decode_image_detailed,
)
from laioncele.faces.factory import load_backend
from laioncele.faces.stage import FaceStage, ImageResult, columns_to_table, filter_faces, results_to_columns

__all__ = [
    "LANDMARK_ORDER",
    "REJECT_REASONS",
    "DecodedImage",
    "Face",
    "FaceBackend",
    "FaceStage",
    "ImageRejected",
    "ImageResult",
    "columns_to_table",
    "cosine_similarity",
    "decode_image",
    "decode_image_detailed",
    "filter_faces",
    "l2_normalise",
    "load_backend",
    "results_to_columns",
]

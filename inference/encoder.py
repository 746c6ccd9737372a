"""Reference photos -> name embedding: find the face, crop it as training did, run the exported image encoder.

The encoder is anything with ``predict(images: list[PIL.Image]) -> Tensor (N, K, D)`` (face crops in, one name
embedding per crop out) and ``mean`` (K, D), the dataset's mean name embedding that recalibration (eq. 4) pulls
towards or pushes away from. ``load_name_encoder`` builds one from an export written by ``encoder_training``
(``encoder_training.export.load_exported(dir) -> (model, config, mean)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image

    from laioncele.faces import Face, FaceBackend

DEFAULT_CROP_MARGIN = 0.4  # training's default (TrainingConfig.crop_margin) when an export does not say
MAX_DETECT_SIDE = 1600  # references are downscaled to this for detection, as the faces stage does


class NameEncoderLike(Protocol):
    mean: torch.Tensor  # (K, D)

    def predict(self, images: list[Image.Image]) -> torch.Tensor:  # face crops -> (N, K, D)
        ...


class ReferenceImageError(ValueError):
    """A reference photo cannot give a name embedding (unreadable, or no face in it)."""


class UnreadableImageError(ReferenceImageError):
    pass


class NoFaceError(ReferenceImageError):
    pass


class ExportError(FileNotFoundError):
    """The encoder export directory is missing or incomplete."""


@dataclass
class ExportedNameEncoder:
    """An exported encoder behind the ``NameEncoderLike`` protocol."""

    model: Any  # encoder_training.model.NameEncoder (or any module with encode_crops / predict)
    mean: torch.Tensor  # (K, D) float32
    crop_margin: float = DEFAULT_CROP_MARGIN
    config: Any = None

    @torch.no_grad()
    def predict(self, images: list[Image.Image]) -> torch.Tensor:
        crops = [image.convert("RGB") for image in images]
        if hasattr(self.model, "encode_crops"):
            out = self.model.encode_crops(crops)
        elif hasattr(self.model, "predict"):
            out = self.model.predict(crops)
        else:
            raise TypeError(f"{type(self.model).__name__} has neither encode_crops nor predict")
        return torch.as_tensor(out).float().cpu()


def _config_value(config: Any, key: str, default: Any) -> Any:
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def encoder_training_loader() -> Callable[[str], tuple[Any, Any, Any]]:
    """``encoder_training.export.load_exported``: the one place that knows the export's file layout."""
    try:
        from encoder_training.export import load_exported
    except ImportError as error:
        raise ExportError(
            f"cannot read encoder exports: encoder_training.export is unavailable ({error})"
        ) from error
    return load_exported


def load_name_encoder(
    export_dir: str | Path,
    device: str | torch.device | None = None,
    loader: Callable[[str], tuple[Any, Any, Any]] | None = None,
) -> ExportedNameEncoder:
    """Load an exported encoder and its mean name embedding; clear errors for a missing or broken export.

    ``loader`` defaults to ``encoder_training.export.load_exported``; tests and other export formats may pass
    their own ``(dir) -> (model, config, mean)``.
    """
    directory = Path(export_dir).expanduser()
    if not directory.is_dir():
        raise ExportError(f"encoder export directory {directory} does not exist")
    load = loader or encoder_training_loader()
    try:
        model, config, mean = load(str(directory))
    except (OSError, ValueError, KeyError) as error:
        raise ExportError(f"{directory} is not a readable encoder export: {error}") from error
    mean_tensor = torch.as_tensor(np.asarray(mean, dtype=np.float32))
    if mean_tensor.ndim != 2:
        raise ExportError(f"{directory}: mean name embedding must be (K, D), got {tuple(mean_tensor.shape)}")
    if device is not None and hasattr(model, "to"):
        model = model.to(device)
    if hasattr(model, "eval"):
        model.eval()
    margin = _config_value(config, "crop_margin", DEFAULT_CROP_MARGIN)
    return ExportedNameEncoder(model=model, mean=mean_tensor, crop_margin=float(margin), config=config)


def read_reference(path: str | Path) -> Image.Image:
    """An RGB image from disk, EXIF orientation applied; ``UnreadableImageError`` names the file otherwise."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UnreadableImageError(f"cannot read reference image {path}: {error}") from error


def square_face_crop(image: Image.Image, bbox: Sequence[float], margin: float) -> Image.Image:
    """The training crop (``encoder_training.data.face_crop`` without augmentation): a square centred on the
    face box, its side the box's longer side grown by ``margin`` on every side, black outside the image."""
    try:
        from encoder_training.data import face_crop
    except ImportError:
        face_crop = None
    if face_crop is not None:
        return face_crop(image, list(bbox), margin)
    x1, y1, x2, y2 = (float(v) for v in bbox)
    half = max(max(x2 - x1, y2 - y1) * (1 + 2 * margin) / 2, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return image.crop(tuple(round(v) for v in (cx - half, cy - half, cx + half, cy + half)))


def detect_main_face(image: Image.Image, backend: FaceBackend) -> Face | None:
    """The largest detected face (the subject of a reference photo), in ``image``'s pixel coordinates."""
    scale = min(1.0, MAX_DETECT_SIDE / max(image.size))
    small = image if scale == 1.0 else image.resize((round(image.width * scale), round(image.height * scale)))
    faces = backend.detect([np.asarray(small.convert("RGB"), dtype=np.uint8)])[0]
    if not faces:
        return None
    return max(faces, key=lambda face: face.size).scaled(1.0 / scale)


def face_crops(
    images: Sequence[Image.Image],
    backend: FaceBackend,
    margin: float,
    names: Sequence[str] | None = None,
) -> list[Image.Image]:
    """One face crop per reference; ``NoFaceError`` names the first reference without a face."""
    crops = []
    for i, image in enumerate(images):
        face = detect_main_face(image, backend)
        if face is None:
            label = names[i] if names is not None else f"reference #{i}"
            raise NoFaceError(f"no face found in {label}; use a photo where the face is clearly visible")
        crops.append(square_face_crop(image, face.bbox, margin))
    return crops


def load_face_backend(name: str = "offline") -> FaceBackend:
    """A face backend with the faces stage's defaults (``offline``: dlib; ``insightface``: local ONNX files)."""
    from laioncele.config import FacesConfig
    from laioncele.faces.stage import backend_from_config

    return backend_from_config(FacesConfig(backend=name))


def predict_name_embedding(
    encoder: NameEncoderLike,
    references: Sequence[str | Path | Image.Image],
    backend: FaceBackend,
    margin: float | None = None,
    average: bool = True,
) -> torch.Tensor:
    """Name embedding from reference photos of one person: (K, D) averaged over them, or (N, K, D).

    Averaging several photos of one person smooths out pose and lighting, as a centroid does.
    """
    if not references:
        raise ValueError("at least one reference image is needed")
    labels = [str(r) if not hasattr(r, "size") else f"reference #{i}" for i, r in enumerate(references)]
    images = [read_reference(r) if isinstance(r, str | Path) else r.convert("RGB") for r in references]
    if margin is None:
        margin = float(getattr(encoder, "crop_margin", DEFAULT_CROP_MARGIN))
    crops = face_crops(images, backend, margin, names=labels)
    embeddings = encoder.predict(crops)  # (N, K, D)
    return embeddings.mean(dim=0) if average else embeddings

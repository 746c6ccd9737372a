"""insightface backend (production default): SCRFD detector + ArcFace recogniser from a local model pack.

Models are loaded from a pre-staged directory (buffalo_l: ``det_10g.onnx`` + ``w600k_r50.onnx``) with
``insightface.model_zoo.get_model(path)``; nothing is downloaded at run time. Detection runs one image per call
(SCRFD's exported graphs have batch size 1); recognition gathers every aligned 112x112 crop of a batch and runs
ArcFace on the stack in chunks of ``recognition_batch_size``. Alignment is insightface's own ``norm_crop``
(similarity transform of the 5 landmarks onto the ArcFace template).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from laioncele.faces.base import Face, FaceBackend, check_rgb, l2_normalise

# ArcFace (w600k_r50) cosine similarity: same-person pairs sit around 0.6-0.8, different people around 0-0.2;
# 0.4 is a common verification operating point for buffalo_l (typical range 0.3-0.5).
DEFAULT_MATCH_THRESHOLD = 0.4


def choose_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """onnxruntime execution providers: CUDA first when asked for (or available under ``auto``), then CPU."""
    import onnxruntime

    if not isinstance(providers, str):
        return list(providers)
    available = onnxruntime.get_available_providers()
    if providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"providers='cuda' but onnxruntime only offers {available}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if providers == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + [
            "CPUExecutionProvider"
        ]
    raise ValueError(f"providers must be 'auto', 'cuda', 'cpu' or a list, got {providers!r}")


def _short_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def check_model_dir(model_dir: str | Path, *files: str) -> list[Path]:
    """The model files' paths; a clear error naming the directory and every missing file otherwise."""
    directory = Path(model_dir).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"insightface model directory {str(directory)!r} does not exist; stage the model pack there "
            f"(expected files: {', '.join(files)})"
        )
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        present = sorted(p.name for p in directory.iterdir())
        raise FileNotFoundError(
            f"insightface model directory {str(directory)!r} is missing {', '.join(missing)} "
            f"(present: {', '.join(present) or 'nothing'})"
        )
    return [directory / name for name in files]


class InsightFaceBackend(FaceBackend):
    name = "insightface"

    def __init__(
        self,
        model_dir: str | Path,
        detector_file: str = "det_10g.onnx",
        recognizer_file: str = "w600k_r50.onnx",
        det_size: int = 640,
        det_thresh: float = 0.5,
        nms_thresh: float = 0.4,
        providers: str | Sequence[str] = "auto",
        recognition_batch_size: int = 256,
        match_threshold: float | None = None,
    ) -> None:
        import insightface
        from insightface.model_zoo import get_model
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX
        from insightface.model_zoo.scrfd import SCRFD

        if det_size % 32:
            raise ValueError(f"det_size must be a multiple of 32 (SCRFD's coarsest stride), got {det_size}")
        det_path, rec_path = check_model_dir(model_dir, detector_file, recognizer_file)
        self.providers = choose_providers(providers)
        self.detector = get_model(str(det_path), providers=self.providers)
        if not isinstance(self.detector, SCRFD):
            raise ValueError(
                f"{det_path} does not load as an SCRFD detector (got {type(self.detector).__name__})"
            )
        self.recognizer = get_model(str(rec_path), providers=self.providers)
        if not isinstance(self.recognizer, ArcFaceONNX):
            raise ValueError(
                f"{rec_path} does not load as an ArcFace model (got {type(self.recognizer).__name__})"
            )
        if not self.detector.use_kps:
            raise ValueError(f"{det_path} has no landmark outputs; alignment needs SCRFD with keypoints")
        self.det_size = (det_size, det_size)
        self.detector.prepare(
            -1 if self.providers == ["CPUExecutionProvider"] else 0, input_size=self.det_size
        )
        self.detector.det_thresh = det_thresh
        self.detector.nms_thresh = nms_thresh
        self.crop_size = int(self.recognizer.input_size[0])
        self.recognition_batch_size = recognition_batch_size
        self.embedding_dim = int(self.recognizer.output_shape[-1])
        self.match_threshold = DEFAULT_MATCH_THRESHOLD if match_threshold is None else match_threshold
        self.version = (
            f"insightface-{insightface.__version__};{detector_file}:{_short_sha256(det_path)};"
            f"{recognizer_file}:{_short_sha256(rec_path)}"
        )

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        results = []
        for image in images:
            bgr = np.ascontiguousarray(check_rgb(image)[:, :, ::-1])
            boxes, keypoints = self.detector.detect(bgr, input_size=self.det_size)
            results.append(
                [
                    Face(
                        bbox=box[:4].astype(np.float32),
                        landmarks=kps.astype(np.float32),
                        det_score=float(box[4]),
                    )
                    for box, kps in zip(boxes, keypoints, strict=True)
                ]
            )
        return results

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The face warped onto ArcFace's 112x112 template (RGB), exactly as insightface aligns it."""
        from insightface.utils.face_align import norm_crop

        with (
            warnings.catch_warnings()
        ):  # norm_crop calls scikit-image's deprecated SimilarityTransform.estimate
            warnings.simplefilter("ignore", FutureWarning)
            return norm_crop(check_rgb(image), landmark=face.landmarks, image_size=self.crop_size)

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings of aligned RGB crops, ``recognition_batch_size`` crops per model call."""
        if not crops:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        chunks = []
        for start in range(0, len(crops), self.recognition_batch_size):
            # ArcFaceONNX.get_feat expects BGR (it swaps to RGB while building the blob).
            bgr = [
                np.ascontiguousarray(c[:, :, ::-1])
                for c in crops[start : start + self.recognition_batch_size]
            ]
            chunks.append(self.recognizer.get_feat(bgr))
        return l2_normalise(np.concatenate(chunks, axis=0))

    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Sequence[Face]]) -> list[list[Face]]:
        crops = [
            self.align(image, face)
            for image, image_faces in zip(images, faces, strict=True)
            for face in image_faces
        ]
        embeddings = iter(self.embed_crops(crops))
        return [
            [Face(face.bbox, face.landmarks, face.det_score, next(embeddings)) for face in image_faces]
            for image_faces in faces
        ]

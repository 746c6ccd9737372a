"""Offline backend: dlib's HOG (or MMOD CNN) detector, 5-point shape predictor and ResNet 128-d descriptor.

The weights come from the ``face_recognition_models`` package. That package imports ``pkg_resources`` at import
time (gone from recent setuptools), so its ``models/`` directory is located with ``importlib.util.find_spec``
and the package itself is never imported.

Scores: dlib's detectors return SVM/MMOD margins (0 = the detector's own decision boundary). ``det_score`` is
``sigmoid(margin)``, so 0.5 means "dlib's default threshold" and the stage's ``min_det_score`` reads the same
way for both backends.

Landmarks: dlib's 5-point predictor marks both corners of each eye and the base of the nose; it has no nose
tip and no mouth points. We report eye centres (mean of the two corners) as measured, and estimate the nose
tip and mouth corners by fitting a similarity transform from (left eye, right eye, nose base) of the ArcFace
112x112 template to the measured points and mapping the template's nose tip and mouth corners through it. The
template nose base (56.0, 80.6) was measured by projecting dlib's nose-base point into the template frame on
38 fixture faces (spread ~1.5 px). Against the 68-point predictor's measured points the estimates are off by
~0.1-0.3 inter-eye distances (eyes: ~0.02). With ``landmarks=68`` all five points are measured (eye centres,
nose tip, mouth corners) at the cost of loading the 100 MB 68-point model.

Embeddings: dlib's descriptor is not unit length (norms ~1.3-1.6); we L2-normalise it. dlib's published rule
"same person if euclidean distance < 0.6" on raw descriptors (norms ~1.45) corresponds to cosine ~0.92 on the
normalised ones (see ``DEFAULT_MATCH_THRESHOLD``).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from laioncele.faces.base import Face, FaceBackend, check_rgb, l2_normalise

# Cosine threshold on L2-normalised dlib descriptors. dlib's raw euclidean threshold 0.6 with descriptor norms
# of ~1.45 gives 1 - (0.6 / 1.45)**2 / 2 ~= 0.914, rounded to 0.92. On the shared fixtures (1,891 pairs of
# single-person photos) it separates same from different people with 99.7% accuracy.
DEFAULT_MATCH_THRESHOLD = 0.92
CHIP_SIZE = 150  # dlib's descriptor input: 150x150 chips cut with get_face_chip's alignment
# ArcFace 5-point template (112x112): left eye, right eye, nose tip, left mouth, right mouth.
_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
_TEMPLATE_NOSE_BASE = np.array([56.0, 80.6])  # where dlib's 5-point nose-base point falls in that template


def models_dir() -> Path:
    """The ``models/`` directory of face_recognition_models, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the offline face backend needs the face_recognition_models package (dlib weights); install it"
        )
    directory = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not directory.is_dir():
        raise FileNotFoundError(f"face_recognition_models has no models directory at {directory}")
    return directory


def _similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform (scale, rotation, shift) taking ``src`` points onto ``dst``."""
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def five_points_from_dlib5(parts: np.ndarray) -> np.ndarray:
    """dlib 5-point shape (0-1: image-right eye corners, 2-3: image-left eye corners, 4: nose base) to
    (left eye, right eye, nose tip, left mouth, right mouth); nose tip and mouth estimated from the template."""
    left_eye = parts[2:4].mean(axis=0)
    right_eye = parts[0:2].mean(axis=0)
    measured = np.stack([left_eye, right_eye, parts[4]])
    anchors = np.vstack([_TEMPLATE[:2], _TEMPLATE_NOSE_BASE])
    transform = _similarity_fit(anchors, measured)
    estimated = _TEMPLATE[2:] @ transform[:, :2].T + transform[:, 2]
    return np.vstack([measured[:2], estimated]).astype(np.float32)


def five_points_from_dlib68(parts: np.ndarray) -> np.ndarray:
    """iBUG 68-point shape to (left eye, right eye, nose tip, left mouth, right mouth), all measured."""
    return np.stack(
        [parts[36:42].mean(axis=0), parts[42:48].mean(axis=0), parts[30], parts[48], parts[54]]
    ).astype(np.float32)


def _sigmoid(margin: float) -> float:
    return 1.0 / (1.0 + math.exp(-margin))


class DlibBackend(FaceBackend):
    name = "offline"

    def __init__(
        self,
        detector: str = "hog",
        upsample: int = 1,
        det_thresh: float = 0.5,
        landmarks: int = 5,
        match_threshold: float | None = None,
        models_path: str | Path | None = None,
    ) -> None:
        import dlib

        directory = Path(models_path) if models_path is not None else models_dir()
        if detector not in ("hog", "cnn"):
            raise ValueError(f"offline detector must be 'hog' or 'cnn', got {detector!r}")
        if landmarks not in (5, 68):
            raise ValueError(f"landmarks must be 5 or 68, got {landmarks!r}")
        if not 0.0 < det_thresh < 1.0:
            raise ValueError(f"det_thresh must be in (0, 1), got {det_thresh}")
        files = {
            "cnn": "mmod_human_face_detector.dat",
            "shape": f"shape_predictor_{landmarks}_face_landmarks.dat",
            "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
        }
        missing = [
            f
            for key, f in files.items()
            if (key != "cnn" or detector == "cnn") and not (directory / f).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"dlib model directory {str(directory)!r} is missing {', '.join(missing)}"
            )
        self.detector_kind = detector
        self.upsample = upsample
        self.margin_threshold = math.log(det_thresh / (1.0 - det_thresh))  # inverse sigmoid
        self.landmark_count = landmarks
        if detector == "hog":
            self._hog = dlib.get_frontal_face_detector()
        else:
            self._cnn = dlib.cnn_face_detection_model_v1(str(directory / files["cnn"]))
        self._shape_predictor = dlib.shape_predictor(str(directory / files["shape"]))
        self._descriptor = dlib.face_recognition_model_v1(str(directory / files["descriptor"]))
        self._dlib = dlib
        self.embedding_dim = 128
        self.match_threshold = DEFAULT_MATCH_THRESHOLD if match_threshold is None else match_threshold
        self.version = f"dlib-{dlib.__version__};{detector};shape{landmarks};resnet_v1"

    def _rectangles(self, image: np.ndarray) -> list[tuple[object, float]]:
        if self.detector_kind == "hog":
            rects, margins, _ = self._hog.run(image, self.upsample, self.margin_threshold)
            return list(zip(rects, margins, strict=True))
        found = self._cnn(image, self.upsample)
        return [(d.rect, d.confidence) for d in found if d.confidence >= self.margin_threshold]

    def _shape(self, image: np.ndarray, face: Face):
        x1, y1, x2, y2 = (int(round(float(v))) for v in face.bbox)
        return self._shape_predictor(image, self._dlib.rectangle(x1, y1, x2 - 1, y2 - 1))  # dlib: inclusive

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        results = []
        for image in images:
            image = check_rgb(image)
            faces = []
            for rect, margin in self._rectangles(image):
                shape = self._shape_predictor(image, rect)
                parts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
                points = five_points_from_dlib5(parts) if len(parts) == 5 else five_points_from_dlib68(parts)
                box = np.array(
                    [rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float32
                )
                faces.append(Face(bbox=box, landmarks=points, det_score=_sigmoid(float(margin))))
            faces.sort(key=lambda f: -f.det_score)
            results.append(faces)
        return results

    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Sequence[Face]]) -> list[list[Face]]:
        """One descriptor call for the whole batch (dlib's list-of-images overload)."""
        batch_images, batch_shapes = [], []
        for image, image_faces in zip(images, faces, strict=True):
            if not image_faces:
                continue
            image = check_rgb(image)
            shapes = self._dlib.full_object_detections()
            for face in image_faces:
                shapes.append(self._shape(image, face))
            batch_images.append(image)
            batch_shapes.append(shapes)
        descriptors = (
            self._descriptor.compute_face_descriptor(batch_images, batch_shapes) if batch_images else []
        )
        flat = [np.asarray(d, dtype=np.float32) for per_image in descriptors for d in per_image]
        embeddings = iter(l2_normalise(np.stack(flat)) if flat else [])
        return [
            [Face(face.bbox, face.landmarks, face.det_score, next(embeddings)) for face in image_faces]
            for image_faces in faces
        ]

"""Pick a face backend by name. Kept apart from ``base`` so the interface imports no backend (no circle)."""

from __future__ import annotations

from laioncele.faces.base import FaceBackend


def load_backend(name: str, **options) -> FaceBackend:
    """Build a backend by name: ``insightface`` (options: model_dir, ...) or ``offline`` (dlib).

    Each backend is imported only when asked for: insightface pulls onnxruntime, dlib its native library.
    """
    if name == "insightface":
        from laioncele.faces.insightface_backend import InsightFaceBackend

        return InsightFaceBackend(**options)
    if name in ("offline", "dlib"):
        from laioncele.faces.dlib_backend import DlibBackend

        return DlibBackend(**options)
    raise ValueError(f"unknown face backend {name!r}; expected 'insightface' or 'offline'")

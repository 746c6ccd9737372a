"""Evaluation as in the paper's Table 1: text fidelity (CLIP-TI), image quality against plain SDXL (FID) and
identity consistency, over four prompt sets (scene, action, style, emotion).

* CLIP-TI: the CLIPScore formula, 100 x max(cosine(CLIP image embedding, CLIP prompt embedding), 0), averaged
  over images, with a configurable CLIP (repo id or local folder). Computed here with transformers' CLIPModel
  rather than torchmetrics' ``CLIPScore``: that metric accepts only a few hub ids (or a loader callable) and, with
  transformers 5.x, receives output objects instead of tensors from ``get_image_features`` and fails.
* FID: torchmetrics' ``FrechetInceptionDistance`` between named generations and plain SDXL generations of the same
  prompts and seeds. ``fid_features="inception"`` is the production setting (needs torch-fidelity and its
  Inception weights); ``"clip"`` measures the same Frechet distance in the CLIP image-embedding space (works
  offline, numbers are not comparable with Inception FIDs).
* Identity consistency: cosine between the reference's face embedding and the generated face's, averaged over
  generated images where a face was found, plus that face-detection rate. It is measured with a face model OTHER
  than the one that cleaned the dataset (``measurement_backend``), so the metric does not reward the dataset's own
  recogniser's blind spots.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from inference.pipeline import generate, generate_plain, generation_options

if TYPE_CHECKING:
    from PIL import Image

    from laioncele.config import InferenceConfig
    from laioncele.faces import FaceBackend

PROMPT_SETS: dict[str, list[str]] = {
    "scene": [
        "a photo of a person on a beach at sunset",
        "a photo of a person in a snowy forest",
        "a photo of a person in a busy city street at night",
        "a photo of a person in a library",
        "a photo of a person on a mountain top",
    ],
    "action": [
        "a photo of a person riding a bicycle",
        "a photo of a person playing the guitar",
        "a photo of a person cooking in a kitchen",
        "a photo of a person reading a book",
        "a photo of a person running in a park",
    ],
    "style": [
        "an oil painting of a person",
        "a pencil sketch of a person",
        "a watercolor portrait of a person",
        "a person in the style of a comic book",
        "a person as a marble statue",
    ],
    "emotion": [
        "a photo of a person laughing",
        "a photo of a person crying",
        "a photo of a person looking surprised",
        "a photo of a person looking angry",
        "a photo of a person smiling gently",
    ],
}

ALL = "all"


@dataclass
class Identity:
    """One person to evaluate: a name embedding and, when it came from photos, those photos' face embeddings."""

    label: str
    name_embeds: torch.Tensor  # (K, D), already recalibrated
    reference_faces: np.ndarray | None = None  # (M, E) L2-normalised, from the measurement backend


@dataclass
class EvalRow:
    prompt_set: str
    n_images: int
    clip_ti: float
    fid: float | None  # None: fewer than two images (no covariance)
    id_consistency: float | None  # None: no face found in any generation (or no reference photos)
    face_detection_rate: float | None  # None: no identity with reference photos


@dataclass
class EvalReport:
    rows: list[EvalRow]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"rows": [asdict(row) for row in self.rows], "settings": self.settings}, indent=2)

    def to_markdown(self) -> str:
        def cell(value: float | None, digits: int) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        lines = [
            "| prompt set | images | CLIP-TI | FID vs SDXL | ID consistency | face detection rate |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.prompt_set} | {row.n_images} | {cell(row.clip_ti, 2)} | {cell(row.fid, 2)} | "
                f"{cell(row.id_consistency, 4)} | {cell(row.face_detection_rate, 3)} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.md").write_text(self.to_markdown())
        (out / "eval.json").write_text(self.to_json() + "\n")
        return out / "eval.md", out / "eval.json"


def measurement_backend(dataset_backend: str) -> str:
    """The face model that did NOT clean the dataset: identity is judged by an independent recogniser."""
    return {"insightface": "offline", "offline": "insightface"}[dataset_backend]


def load_clip(source: str) -> tuple[Any, Any]:
    """CLIPModel and CLIPProcessor from a repo id or local folder (read from the cache when offline)."""
    from transformers import CLIPModel, CLIPProcessor

    from inference.pipeline import ModelNotFoundError

    try:
        return CLIPModel.from_pretrained(source).eval(), CLIPProcessor.from_pretrained(source)
    except OSError as error:
        raise ModelNotFoundError(
            f"could not load the CLIP model {source!r} for evaluation: {error}"
        ) from error


def _to_uint8_batch(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images (same size) -> (N, 3, H, W) uint8, the layout torchmetrics' image metrics take."""
    arrays = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


def _embeds(out: Any) -> torch.Tensor:
    """transformers 5.x returns output objects from ``get_*_features``; 4.x returned the tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def clip_ti_scores(
    images: Sequence[Image.Image], prompts: Sequence[str], clip: tuple[Any, Any]
) -> np.ndarray:
    """Per image: 100 x max(cos(image, prompt), 0), CLIPScore's formula, with CLIP's own preprocessing."""
    model, processor = clip
    device = model.device
    pixels = processor(images=[image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]
    max_length = int(model.config.text_config.max_position_embeddings)
    text = processor(
        text=list(prompts), return_tensors="pt", padding=True, truncation=True, max_length=max_length
    )
    image_embeds = _embeds(model.get_image_features(pixel_values=pixels.to(device)))
    text_embeds = _embeds(
        model.get_text_features(
            input_ids=text["input_ids"].to(device), attention_mask=text["attention_mask"].to(device)
        )
    )
    cosine = nn.functional.cosine_similarity(image_embeds.float(), text_embeds.float(), dim=-1)
    return (100.0 * cosine.clamp_min(0)).cpu().numpy()


class ClipImageFeatures(nn.Module):
    """CLIP image embeddings as an FID feature extractor: (N, 3, H, W) uint8 -> (N, projection_dim)."""

    def __init__(self, clip: tuple[Any, Any]) -> None:
        super().__init__()
        self.model, self.processor = clip
        self.num_features = int(self.model.config.projection_dim)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        arrays = list(images.permute(0, 2, 3, 1).cpu().numpy())
        pixels = self.processor(images=arrays, return_tensors="pt")["pixel_values"]
        return _embeds(self.model.get_image_features(pixel_values=pixels.to(self.model.device)))


def fid_metric(fid_features: str, clip: tuple[Any, Any] | None) -> Any:
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if fid_features == "inception":
        if not _TORCH_FIDELITY_AVAILABLE:
            raise RuntimeError(
                "Inception FID needs torch-fidelity and its weights; or use fid_features='clip'"
            )
        return FrechetInceptionDistance(feature=2048)
    if clip is None:
        raise ValueError("fid_features='clip' needs a CLIP model")
    return FrechetInceptionDistance(feature=ClipImageFeatures(clip))


def main_face_embedding(image: Image.Image, backend: FaceBackend) -> np.ndarray | None:
    """Embedding of the largest face in ``image`` (None when no face is found)."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    faces = backend.detect([array])[0]
    if not faces:
        return None
    largest = max(faces, key=lambda face: face.size)
    return backend.embed([array], [[largest]])[0][0].embedding


def reference_face_embeddings(images: Sequence[Image.Image], backend: FaceBackend) -> np.ndarray:
    """(M, E) embeddings of the references' main faces (references without a face are skipped)."""
    found = [e for e in (main_face_embedding(image, backend) for image in images) if e is not None]
    if not found:
        raise ValueError("no face found in any reference photo with the measurement backend")
    return np.stack(found)


def identity_consistency(
    generated: Sequence[Image.Image], reference_faces: np.ndarray, backend: FaceBackend
) -> tuple[list[float], int]:
    """Cosines between the references' mean face and each generated face found, and how many were found."""
    from laioncele.faces import l2_normalise

    centre = l2_normalise(np.asarray(reference_faces, dtype=np.float32).mean(axis=0))
    cosines = []
    for image in generated:
        embedding = main_face_embedding(image, backend)
        if embedding is not None:
            cosines.append(float(np.dot(l2_normalise(embedding), centre)))
    return cosines, len(cosines)


@dataclass
class _Accumulator:
    named: list[Image.Image] = field(default_factory=list)
    plain: list[Image.Image] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    cosines: list[float] = field(default_factory=list)
    faces_checked: int = 0
    faces_found: int = 0


def _row(name: str, acc: _Accumulator, clip: tuple[Any, Any], fid: Callable[[], Any]) -> EvalRow:
    fid_value = None
    if len(acc.named) >= 2:
        metric = fid()
        metric.update(_to_uint8_batch(acc.plain), real=True)
        metric.update(_to_uint8_batch(acc.named), real=False)
        value = float(metric.compute())
        fid_value = value if math.isfinite(value) else None
    return EvalRow(
        prompt_set=name,
        n_images=len(acc.named),
        clip_ti=float(clip_ti_scores(acc.named, acc.prompts, clip).mean()),
        fid=fid_value,
        id_consistency=float(np.mean(acc.cosines)) if acc.cosines else None,
        face_detection_rate=acc.faces_found / acc.faces_checked if acc.faces_checked else None,
    )


def evaluate(
    pipe: Any,
    identities: Sequence[Identity],
    settings: InferenceConfig,
    *,
    face_backend: FaceBackend | None = None,
    clip: tuple[Any, Any] | None = None,
    prompt_sets: dict[str, list[str]] | None = None,
) -> EvalReport:
    """Generate every prompt of every set for every identity (and plain SDXL once per prompt), then score.

    ``face_backend`` is the measurement backend (default: the one ``measurement_backend`` picks); ``clip`` a
    loaded (model, processor) pair (default: ``settings.eval_clip_model``).
    """
    from inference.encoder import load_face_backend

    prompt_sets = prompt_sets or PROMPT_SETS
    clip = clip or load_clip(settings.eval_clip_model)
    if face_backend is None and any(identity.reference_faces is not None for identity in identities):
        face_backend = load_face_backend(measurement_backend(settings.eval_dataset_face_backend))
    n = settings.eval_images_per_prompt
    common = generation_options(settings)
    per_set = {name: _Accumulator() for name in prompt_sets}
    for set_name, prompts in prompt_sets.items():
        acc = per_set[set_name]
        for prompt in prompts:
            plain = generate_plain(pipe, prompt, num_images=n, **common)
            for identity in identities:
                names = identity.name_embeds.unsqueeze(0).expand(n, *identity.name_embeds.shape)
                named = generate(pipe, prompt, names, vary_seed=True, **common)
                acc.named += named
                acc.plain += plain
                acc.prompts += [prompt] * len(named)
                if identity.reference_faces is not None and face_backend is not None:
                    cosines, found = identity_consistency(named, identity.reference_faces, face_backend)
                    acc.cosines += cosines
                    acc.faces_found += found
                    acc.faces_checked += len(named)
    overall = _Accumulator()
    for acc in per_set.values():
        for attr in ("named", "plain", "prompts", "cosines"):
            getattr(overall, attr).extend(getattr(acc, attr))
        overall.faces_found += acc.faces_found
        overall.faces_checked += acc.faces_checked

    def make_fid() -> Any:
        return fid_metric(settings.eval_fid_features, clip)

    rows = [_row(name, acc, clip, make_fid) for name, acc in per_set.items()]
    rows.append(_row(ALL, overall, clip, make_fid))
    report_settings = {
        "model": settings.model,
        "identities": [identity.label for identity in identities],
        "steps": settings.steps,
        "guidance_scale": settings.guidance_scale,
        "delta": settings.delta,
        "name_scale": settings.name_scale,
        "images_per_prompt": n,
        "clip_model": settings.eval_clip_model,
        "fid_features": settings.eval_fid_features,
        "face_measurement_backend": getattr(face_backend, "name", None),
    }
    return EvalReport(rows=rows, settings=report_settings)

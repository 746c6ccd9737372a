"""Stage every model the cluster needs into one directory at IMAGE BUILD time (``infra/Dockerfile``).

Workers run with ``HF_HUB_OFFLINE=1`` and never fetch a model: each stage's config points at a directory
under ``/models`` (see ``CONFIG_OVERRIDES`` and infra/RUNBOOK.md). ``--verify`` (run again in the final image,
offline) checks that every expected file is there and writes ``MODELS.json`` with each file's size and sha256,
so a run's outputs can name the exact weights they came from. ``--plan`` prints what would be staged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StagedModel:
    """One model: where it comes from, where it goes under the root, which files must exist afterwards."""

    name: str  # directory under the models root
    source: str  # a model-hub repo id, or "insightface:<pack>" for insightface's own model packs
    allow_patterns: tuple[str, ...]  # files of the repo to fetch (only what loading needs)
    required: tuple[str, ...]  # relative paths that must exist once staged
    used_by: str  # config key that points at the directory


MODELS: tuple[StagedModel, ...] = (
    StagedModel(
        name="buffalo_l",
        source="insightface:buffalo_l",
        allow_patterns=(),
        required=("det_10g.onnx", "w600k_r50.onnx"),
        used_by="faces.model_dir",
    ),
    StagedModel(
        # Only the two text encoders and tokenizers: the name targets need nothing else from SDXL.
        name="stable-diffusion-xl-base-1.0",
        source="stabilityai/stable-diffusion-xl-base-1.0",
        allow_patterns=(
            "model_index.json",
            "tokenizer/*",
            "tokenizer_2/*",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "text_encoder_2/config.json",
            "text_encoder_2/model.safetensors",
        ),
        required=(
            "tokenizer/vocab.json",
            "tokenizer_2/vocab.json",
            "text_encoder/model.safetensors",
            "text_encoder_2/model.safetensors",
        ),
        used_by="targets.source",
    ),
    StagedModel(
        name="clip-vit-large-patch14",
        source="openai/clip-vit-large-patch14",
        allow_patterns=("*.json", "*.txt", "model.safetensors"),
        required=("config.json", "model.safetensors"),
        used_by="training.tower_models[0], inference.eval_clip_model",
    ),
    StagedModel(
        name="CLIP-ViT-bigG-14-laion2B-39B-b160k",
        source="laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
        allow_patterns=("*.json", "*.txt", "model*.safetensors"),
        required=("config.json",),
        used_by="training.tower_models[1]",
    ),
)

DEFAULT_ROOT = Path("/models")


def config_overrides(root: Path = DEFAULT_ROOT) -> list[str]:
    """``--set`` overrides that point a config at the staged models (what rayjob.yaml passes)."""
    by_name = {m.name: root / m.name for m in MODELS}
    towers = f"[{by_name['clip-vit-large-patch14']}, {by_name['CLIP-ViT-bigG-14-laion2B-39B-b160k']}]"
    return [
        f"faces.model_dir={by_name['buffalo_l']}",
        f"targets.source={by_name['stable-diffusion-xl-base-1.0']}",
        f"training.tower_models={towers}",
        f"inference.eval_clip_model={by_name['clip-vit-large-patch14']}",
    ]


def stage(model: StagedModel, root: Path) -> Path:
    """Fetch one model into ``root/model.name`` (network: image build only)."""
    target = root / model.name
    target.mkdir(parents=True, exist_ok=True)
    if model.source.startswith("insightface:"):
        from insightface.utils.storage import ensure_available

        # insightface unpacks its pack to <root>/models/<pack>; link it where the config looks.
        pack = model.source.split(":", 1)[1]
        unpacked = Path(ensure_available("models", pack, root=str(root / ".insightface")))
        for onnx in unpacked.rglob("*.onnx"):  # some packs unpack into a nested folder
            shutil.copy2(onnx, target / onnx.name)
    else:
        from huggingface_hub import snapshot_download

        snapshot_download(model.source, local_dir=str(target), allow_patterns=list(model.allow_patterns))
    return target


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(root: Path) -> dict[str, dict]:
    """Check every required file; return {model: {source, used_by, files: {path: {bytes, sha256}}}}."""
    report: dict[str, dict] = {}
    missing = []
    for model in MODELS:
        base = root / model.name
        missing += [str(base / rel) for rel in model.required if not (base / rel).is_file()]
        files = sorted(p for p in base.rglob("*") if p.is_file() and ".cache" not in p.parts)
        report[model.name] = {
            "source": model.source,
            "used_by": model.used_by,
            "files": {
                p.relative_to(base).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256(p)}
                for p in files
            },
        }
    if missing:
        raise FileNotFoundError("models missing after staging: " + ", ".join(missing))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.stage_models", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="print models, targets and config overrides")
    mode.add_argument(
        "--verify", action="store_true", help="offline: check the staged files, write MODELS.json"
    )
    args = parser.parse_args(argv)
    if args.plan:
        for model in MODELS:
            print(f"{model.source:45s} -> {args.root / model.name}  ({model.used_by})")
        print("config: " + " ".join(f"--set {o}" for o in config_overrides(args.root)))
        return 0
    if not args.verify:
        for model in MODELS:
            print(f"staging {model.source} -> {stage(model, args.root)}", flush=True)
    try:
        report = verify(args.root)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    (args.root / "MODELS.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"{len(report)} models verified under {args.root} (MODELS.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

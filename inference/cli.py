"""``python -m inference``: draw a person from reference photos or a name, or blend two people.

    python -m inference generate --ref face.jpg --prompt "a photo of a person surfing" --out out.png \\
        --model stabilityai/stable-diffusion-xl-base-1.0 --encoder exports/encoder
    python -m inference generate --name "Brad Pitt" --prompt "..." --out out.png
    python -m inference interpolate --ref a.jpg --ref b.jpg --t 0 0.5 1 --prompt "..." --out strip.png
    python -m inference evaluate --ref a.jpg --name "Cher" --encoder exports/encoder --out-dir eval/

Defaults come from the ``inference`` section of the pipeline config (``--config``); flags override it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from laioncele.config import InferenceConfig, load_config

EXIT_USAGE = 2


class UsageError(ValueError):
    """The command line asks for something that cannot work (reported without a traceback)."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    who = parser.add_argument_group("identity")
    who.add_argument(
        "--ref", action="append", default=[], metavar="IMAGE", help="reference photo (repeatable)"
    )
    who.add_argument("--name", action="append", default=[], help="a real name as text instead of a photo")
    who.add_argument("--encoder", metavar="EXPORT_DIR", help="exported image encoder (needed with --ref)")
    who.add_argument("--face-backend", choices=["offline", "insightface"], help="face detector for --ref")
    who.add_argument("--face-margin", type=float, help="face crop margin (default: the export's)")
    who.add_argument("--delta", type=float, help="recalibration strength (eq. 4); 1 = as predicted")
    who.add_argument("--name-scale", type=float, help="norm of the name embedding (eq. 5)")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative-prompt")
    gen.add_argument("--out", required=True, type=Path, help="output PNG")
    gen.add_argument("--model", help="SDXL repo id, diffusers folder or single .safetensors file")
    gen.add_argument("--config-dir", help="local diffusers SDXL folder describing a single-file --model")
    gen.add_argument("--steps", type=int)
    gen.add_argument("--guidance-scale", type=float)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--device")
    gen.add_argument("--dtype", choices=["auto", "float16", "bfloat16", "float32"])
    gen.add_argument("--config", type=Path, help="pipeline YAML config (its 'inference' section)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="one image of one person (refs averaged, or a name)")
    _add_common(generate)
    blend = commands.add_parser(
        "interpolate", help="a strip of blends between two people (two refs or names)"
    )
    _add_common(blend)
    blend.add_argument(
        "--t", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0], help="blend weights"
    )
    blend.add_argument("--method", choices=["slerp", "lerp"], default="slerp")
    score = commands.add_parser(
        "evaluate", help="the paper's Table 1 (CLIP-TI, FID, ID consistency) per identity"
    )
    _add_common(score)
    score.set_defaults(prompt="(the four prompt sets)")
    for action in score._actions:
        if action.dest in ("prompt", "out"):
            action.required = False
    score.add_argument("--out-dir", type=Path, required=True, help="writes eval.md and eval.json here")
    score.add_argument("--clip-model", help="CLIP for CLIP-TI (and FID with --fid-features clip)")
    score.add_argument("--fid-features", choices=["inception", "clip"])
    score.add_argument("--images-per-prompt", type=int)
    score.add_argument("--prompts-per-set", type=int, help="use only the first N prompts of each set")
    score.add_argument("--dataset-face-backend", choices=["insightface", "offline"], help="ID uses the other")
    return parser


_FLAG_TO_FIELD = {
    "model": "model", "config_dir": "config_dir", "encoder": "encoder_dir", "face_backend": "face_backend",
    "face_margin": "face_margin", "delta": "delta", "name_scale": "name_scale", "steps": "steps",
    "guidance_scale": "guidance_scale", "seed": "seed", "height": "height", "width": "width",
    "device": "device", "dtype": "dtype", "negative_prompt": "negative_prompt",
    "clip_model": "eval_clip_model", "fid_features": "eval_fid_features",
    "images_per_prompt": "eval_images_per_prompt", "dataset_face_backend": "eval_dataset_face_backend",
}  # fmt: skip


def settings_from_args(args: argparse.Namespace) -> InferenceConfig:
    """The config file's ``inference`` section with every flag the user gave laid over it."""
    base = load_config(args.config).inference if args.config else InferenceConfig()
    given = {
        field: getattr(args, flag)
        for flag, field in _FLAG_TO_FIELD.items()
        if getattr(args, flag, None) is not None
    }
    return InferenceConfig(**{**base.model_dump(), **given})


def identity_embeddings(args: argparse.Namespace, settings: InferenceConfig, pipe: Any) -> list[torch.Tensor]:
    """Name embeddings (K, D) in command-line order: the refs (averaged, for generate) or the names."""
    from inference.encoder import load_face_backend, load_name_encoder, predict_name_embedding
    from inference.pipeline import calibrated, text_name_embedding

    if args.ref and args.name:
        raise UsageError("give either --ref or --name, not both")
    if not args.ref and not args.name:
        raise UsageError("give a reference photo (--ref) or a name (--name)")
    encoder = None
    if settings.encoder_dir:
        encoder = load_name_encoder(settings.encoder_dir, device=pipe.device)
    elif args.ref:
        raise UsageError("--ref needs the exported image encoder: pass --encoder EXPORT_DIR")
    if args.ref:
        backend = load_face_backend(settings.face_backend)
        refs = [Path(r) for r in args.ref]
        if args.command == "generate":
            embeddings = [predict_name_embedding(encoder, refs, backend, settings.face_margin)]
        else:
            embeddings = [predict_name_embedding(encoder, [r], backend, settings.face_margin) for r in refs]
    else:
        embeddings = list(text_name_embedding(pipe, args.name))
        if args.command == "generate":
            embeddings = [torch.stack(embeddings).mean(dim=0)]
    mean = encoder.mean if encoder is not None else None
    return [calibrated(e, mean, settings.delta, settings.name_scale) for e in embeddings]


def run_evaluation(args: argparse.Namespace, settings: InferenceConfig) -> Path:
    """One identity per --ref photo and per --name; the table goes to --out-dir (markdown + JSON)."""
    from inference.encoder import load_face_backend, read_reference
    from inference.eval import PROMPT_SETS, Identity, evaluate, measurement_backend, reference_face_embeddings
    from inference.pipeline import load_sdxl_from_config

    if args.ref and not settings.encoder_dir:
        raise UsageError("--ref needs the exported image encoder: pass --encoder EXPORT_DIR")
    pipe = load_sdxl_from_config(settings, progress_bar=not args.quiet)
    prompt_sets = {k: v[: args.prompts_per_set or None] for k, v in PROMPT_SETS.items()}
    backend = load_face_backend(measurement_backend(settings.eval_dataset_face_backend)) if args.ref else None
    identities = []
    for ref in args.ref:
        one = argparse.Namespace(**{**vars(args), "ref": [ref], "name": [], "command": "generate"})
        faces = reference_face_embeddings([read_reference(ref)], backend)
        identities.append(Identity(str(ref), identity_embeddings(one, settings, pipe)[0], faces))
    for name in args.name:
        one = argparse.Namespace(**{**vars(args), "ref": [], "name": [name], "command": "generate"})
        identities.append(Identity(name, identity_embeddings(one, settings, pipe)[0]))
    if not identities:
        raise UsageError("give reference photos (--ref) or names (--name) to evaluate")
    report = evaluate(pipe, identities, settings, face_backend=backend, prompt_sets=prompt_sets)
    markdown_path, _ = report.write(args.out_dir)
    print(report.to_markdown())
    return markdown_path


def run(args: argparse.Namespace) -> Path:
    from inference.interpolate import interpolate
    from inference.pipeline import generate, generation_options, image_strip, load_sdxl_from_config

    settings = settings_from_args(args)
    if args.command == "evaluate":
        return run_evaluation(args, settings)
    if args.command == "interpolate" and len(args.ref) + len(args.name) != 2:
        raise UsageError("interpolate takes exactly two identities: two --ref or two --name")
    if not args.out.parent.is_dir():
        raise UsageError(f"output folder {args.out.parent} does not exist")
    if args.ref and not settings.encoder_dir:
        raise UsageError("--ref needs the exported image encoder: pass --encoder EXPORT_DIR")
    pipe = load_sdxl_from_config(settings, progress_bar=not args.quiet)
    embeddings = identity_embeddings(args, settings, pipe)
    if args.command == "generate":
        names = embeddings[0]  # (K, D)
    else:
        names = torch.stack(
            [interpolate(embeddings[0], embeddings[1], t, method=args.method) for t in args.t]
        )
    images = generate(pipe, args.prompt, names, **generation_options(settings))
    result = images[0] if args.command == "generate" else image_strip(images)
    result.save(args.out)
    return args.out


def main(argv: Sequence[str] | None = None) -> int:
    from inference.encoder import ReferenceImageError
    from inference.pipeline import MissingMeanError

    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except (UsageError, ReferenceImageError, MissingMeanError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {out}")
    return 0

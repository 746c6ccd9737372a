"""CLI: ``python -m encoder_training train --config FILE [--set training.key=value ...]``."""

from __future__ import annotations

import argparse
import sys

from encoder_training.data import DatasetMissingError
from laioncele.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m encoder_training",
        description="Train the face -> name-embedding encoder on a finished LaionCele dataset and export it.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="cache tower features (when frozen), train, evaluate, checkpoint and export",
        description="Reads <run.output_root>/dataset (or training.dataset_dir); writes <run.output_root>/encoder "
        "(or training.output_dir): features/, checkpoints/, metrics.csv, tensorboard/, export/. "
        "Re-running resumes from the newest checkpoint unless training.resume=false.",
    )
    train.add_argument("--config", default=None, help="YAML config file (default: built-in defaults)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.towers=tiny --set training.trainer=local",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from encoder_training.data import require_dataset
    from encoder_training.train import resolve_paths
    from encoder_training.train import train as run_training

    try:
        require_dataset(resolve_paths(config).dataset_dir)  # before starting Ray: fail in a second, clearly
    except DatasetMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if config.training.trainer == "ray":
        from pipelines.runtime import ensure_ray

        ensure_ray(config.ray)
    try:
        result = run_training(config)
    except DatasetMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"[train] done at step {result.step} ({result.mode}); drops {result.drops}")
    if result.export_dir:
        print(f"[train] export: {result.export_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m pipelines``: run the LaionCele pipeline, one stage or all of them."""

from __future__ import annotations

import argparse
import sys
import time

from laioncele.config import dump_config, load_config
from laioncele.shards import ShardError
from pipelines.runner import StageFailed, run_stage
from pipelines.stages import ORDER, STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="Build the LaionCele dataset: "
        + " -> ".join(ORDER)
        + ". Every stage resumes where it stopped.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", default=None, help="YAML config file (default: built-in defaults)")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set ingest.min_width=256 (repeatable)",
        )

    run = sub.add_parser("run", help="run one stage, or all stages in order")
    run.add_argument(
        "stage", nargs="?", default="all", choices=[*ORDER, "all"], help="stage to run (default: all)"
    )
    run.add_argument(
        "--from",
        dest="from_stage",
        choices=ORDER,
        default=None,
        help="with 'all': start at this stage (earlier stages must be complete)",
    )
    add_config_args(run)

    show = sub.add_parser("show-config", help="print the effective config (after file and overrides)")
    add_config_args(show)

    sub.add_parser("stages", help="list the stages in data-flow order")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stages":
        for name in ORDER:
            stage = STAGES[name]
            print(f"{name:12s} <- {stage.upstream or 'LAION parquet':12s} {stage.description}")
        return 0
    try:
        config = load_config(args.config, args.overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "show-config":
        print(dump_config(config), end="")
        return 0

    names = ORDER if args.stage == "all" else [args.stage]
    if args.stage == "all" and args.from_stage:
        names = ORDER[ORDER.index(args.from_stage) :]
    started = time.monotonic()
    try:
        for name in names:
            run_stage(STAGES[name], config)
    except (ShardError, StageFailed, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"pipeline finished in {time.monotonic() - started:.1f}s; outputs under {config.output_root}")
    return 0

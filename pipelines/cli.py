"""``python -m pipelines``: run the LaionCele pipeline, one stage or all of them."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import ray

from laioncele.config import Config, dump_config, load_config
from laioncele.report import write_report
from laioncele.shards import ShardError, atomic_write_json, read_shards
from laioncele.storage import is_object_uri
from laioncele.truth_check import load_truth, truth_check
from pipelines.runner import StageFailed, run_stage
from pipelines.runtime import native_stderr_to, ray_log_file, ray_logs_to
from pipelines.sample_server import serve_directory
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

    report = sub.add_parser(
        "report", help="write the HTML QA report of a built dataset (<output_root>/report/)"
    )
    add_config_args(report)

    show = sub.add_parser("show-config", help="print the effective config (after file and overrides)")
    add_config_args(show)

    sub.add_parser("stages", help="list the stages in data-flow order")
    return parser


def report_truth(config: Config) -> None:
    """Precision/recall of the built sample against its ground truth, printed and saved."""
    root = config.output_root
    result = truth_check(
        read_shards(root / "dataset" / "images", columns=["url", "identity_id"]),
        read_shards(root / "dataset" / "identities", columns=["identity_id", "name", "aliases"]),
        load_truth(config.sample_server.truth),
    )
    atomic_write_json(root / "truth_check.json", result)
    print(
        f"truth check: {result['kept_images']} images kept, precision {result['precision']:.3f}, "
        f"recall {result['recall']:.3f}; identities: {', '.join(result['identities'])}"
    )


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

    if args.command == "report":
        try:
            print(f"report: {write_report(config.output_root, config=config.report)}")
        except (ShardError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0

    names = ORDER if args.stage == "all" else [args.stage]
    if args.stage == "all" and args.from_stage:
        names = ORDER[ORDER.index(args.from_stage) :]
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            if config.sample_server.serve_dir and "download" in names:  # only downloads read from it
                url = stack.enter_context(
                    serve_directory(Path(config.sample_server.serve_dir), config.sample_server.port)
                )
                print(f"serving {config.sample_server.serve_dir} at {url} for the sample's downloads")
            ray_log = stack.enter_context(ray_logs_to(ray_log_file(config)))
            if config.ray.executor == "ray" and not ray.is_initialized():  # this run starts (or joins) Ray
                stack.enter_context(native_stderr_to(ray_log))  # Ray's C++ core writes to fd 2 directly
                stack.callback(ray.shutdown)  # first on exit: actors stop while their log lines are filtered
            print(f"Ray's own log lines go to {ray_log}")
            for name in names:
                run_stage(STAGES[name], config)
        if "dataset" in names:
            if config.sample_server.truth:
                report_truth(config)
            print(f"dataset: {config.output_root / 'dataset'} (manifest.json, identities/, images/)")
            if is_object_uri(config.output_root):  # the HTML report writes local files (crops, plots)
                print(
                    "QA report: not written for an object-store output_root (laioncele.report is local-only)"
                )
            else:
                print(f"QA report: {write_report(config.output_root, config=config.report)}")
    except (ShardError, StageFailed, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"pipeline finished in {time.monotonic() - started:.1f}s; outputs under {config.output_root}")
    return 0

"""``python -m pipelines``: run the LaionCele pipeline, one stage or all of them."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import ray

from laioncele.config import Config, config_from_dict, dump_config, load_config
from laioncele.export import FORMATS
from laioncele.export import export as export_dataset
from laioncele.io.shards import ShardError, atomic_write_json, read_shards
from laioncele.io.storage import as_path, configure
from laioncele.removal import read_names, remove_names
from laioncele.report.html import write_report
from laioncele.report.truth_check import load_truth, truth_check
from pipelines.empty_result import empty_result_warning
from pipelines.interrupts import Interrupted, sigterm_interrupts
from pipelines.runner import StageFailed, run_stage
from pipelines.runtime import native_stderr_to, ray_log_file, ray_logs_to, stop_ray
from pipelines.sample_server import serve_directory
from pipelines.stages import ORDER, STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        # `laioncele ...` (the console script) or `python -m pipelines ...`: usage lines name what was typed
        prog="laioncele" if Path(sys.argv[0]).name == "laioncele" else "python -m pipelines",
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
    run.add_argument(
        "--fail-on-empty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="exit non-zero at the first stage that writes no rows (default: run.fail_on_empty)",
    )
    add_config_args(run)

    report = sub.add_parser(
        "report", help="write the HTML QA report of a built dataset (<output_root>/report/)"
    )
    add_config_args(report)

    show = sub.add_parser("show-config", help="print the effective config (after file and overrides)")
    add_config_args(show)

    export = sub.add_parser(
        "export", help="write a trainer-ready export of the built dataset (docs/exports.md)"
    )
    export.add_argument("--format", required=True, choices=FORMATS, help="webdataset, hf or parquet")
    export.add_argument(
        "--out", default=None, help="export directory (default: <output_root>/export/<format>)"
    )
    add_config_args(export)

    remove = sub.add_parser(
        "remove", help="drop named people from the built dataset and every export (opt-out after release)"
    )
    remove.add_argument("--names", required=True, help="file with one name per line (# comments allowed)")
    remove.add_argument(
        "--export",
        dest="exports",
        action="append",
        default=[],
        help="an export directory not recorded in dataset/exports.json (repeatable)",
    )
    add_config_args(remove)

    sub.add_parser("stages", help="list the stages in data-flow order")

    describe = sub.add_parser(
        "describe", help="the stage graph: each stage's inputs, config sections, schema and config hash"
    )
    describe.add_argument("--json", action="store_true", help="print the description as JSON")
    add_config_args(describe)
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


def run_export(config: Config, fmt: str, out: str | None) -> int:
    """Export the built dataset; the report's skip counts are printed (and kept in the export's export.json)."""
    configure(config.storage)
    dataset = config.output_root / "dataset"
    target = as_path(out, config.storage) if out else config.output_root / "export" / fmt
    try:
        report = export_dataset(
            fmt, dataset, target, config.export.shard_bytes, verify_images=config.export.verify_images
        )
    except (ShardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def run_remove(config: Config, names_file: str, exports: list[str]) -> int:
    """Apply a removal request; the card is rewritten with the build's own config (from dataset/manifest.json)."""
    configure(config.storage)
    dataset = config.output_root / "dataset"
    try:
        names = read_names(names_file)
        top = dataset / "manifest.json"
        built = json.loads(top.read_text()).get("config") if top.is_file() else None
        card_config = config_from_dict(built) if built else config
        entry = remove_names(dataset, names, card_config, exports, compression=config.shards.compression)
    except (OSError, ShardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"removed {entry['identities']} identities and {entry['images']} images for {len(names)} names "
        f"({entry['image_reasons']}); exports: {entry['exports']}"
    )
    print("add these names to names.opt_out_names so a rebuild never collects them again")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI; SIGTERM stops it like Ctrl-C does: one line, exit 143 (see ``pipelines.interrupts``)."""
    with sigterm_interrupts():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stages":
        for name in ORDER:
            stage = STAGES[name]
            print(f"{name:12s} <- {', '.join(stage.inputs) or 'LAION parquet':32s} {stage.description}")
        return 0
    if getattr(args, "fail_on_empty", None) is not None:
        args.overrides.append(f"run.fail_on_empty={str(args.fail_on_empty).lower()}")
    try:
        config = load_config(args.config, args.overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure(config.storage)  # every s3:// path this command resolves uses the configured endpoint
    if args.command == "show-config":
        print(dump_config(config), end="")
        return 0
    if args.command == "describe":
        from pipelines.describe import describe_stages, format_description  # noqa: PLC0415

        records = describe_stages(config)
        print(json.dumps(records, indent=2) if args.json else format_description(records).rstrip("\n"))
        return 0

    if args.command == "export":
        return run_export(config, args.format, args.out)
    if args.command == "remove":
        return run_remove(config, args.names, args.exports)

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
    empty: str | None = None  # the warning of the first stage that wrote no rows
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
                manifest = run_stage(STAGES[name], config)
                warning = None if empty else empty_result_warning(STAGES[name], manifest, config.input.paths)
                if warning:
                    empty = warning
                    print(warning, file=sys.stderr)
                    if config.run.fail_on_empty:
                        print(f"error: stopped at stage {name!r} (run.fail_on_empty)", file=sys.stderr)
                        return 1
        if "dataset" in names:
            if config.sample_server.truth:
                report_truth(config)
            print(f"dataset: {config.output_root / 'dataset'} (manifest.json, identities/, images/)")
            print(f"QA report: {write_report(config.output_root, config=config.report)}")
    except (ShardError, StageFailed, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (sigterm_interrupts): one line, no traceback
        interrupted = Interrupted.at(exc, "")
        stop_ray()  # now, so the shutdown's own chatter comes before the one line, not after it
        print(interrupted.message(), file=sys.stderr)
        return interrupted.exit_code
    print(f"pipeline finished in {time.monotonic() - started:.1f}s; outputs under {config.output_root}")
    if empty:
        print(f"{empty} (--fail-on-empty makes this an error)", file=sys.stderr)
    return 0

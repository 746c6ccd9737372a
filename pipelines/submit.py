"""``python -m pipelines.submit``: build the dataset on a Ray cluster as a Ray Job, or locally.

With ``RAY_ADDRESS`` (or ``--address``) set to a cluster's job server (``http://<head>:8265``), the pipeline is
submitted with ``ray job submit``: this checkout is uploaded as the job's working directory (outputs, the venv
and caches excluded), the workers get the offline environment variables, and the command waits for the job,
streaming its logs, and fails when the job fails. Without an address the same CLI runs in this process, which
starts a local Ray instance. Same code, same config either way.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from laioncele.config import Config, load_config
from laioncele.io.storage import is_object_uri
from pipelines.runtime import WORKER_ENV
from pipelines.stages import ORDER

# Never uploaded with the working directory: build outputs, the environment, caches, VCS metadata.
EXCLUDES = [
    ".venv",
    ".git",
    "output",
    "bench/work",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
]

# The job's driver and workers get the same offline, quiet environment as a local run. The driver's own
# ray.init (pipelines.runtime) passes these keys again: without the override flag Ray refuses to merge two
# runtime envs that name the same env var, even with equal values.
JOB_ENV = {**WORKER_ENV, "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}


def pipeline_args(config_path: str | None, overrides: list[str], stage: str = "all") -> list[str]:
    """Arguments of ``python -m pipelines`` that build ``stage`` (or all stages) with this config."""
    args = ["run", stage]
    if config_path:
        args += ["--config", config_path]
    for override in overrides:
        args += ["--set", override]
    return args


def runtime_env(working_dir: Path, config: Config, extra_excludes: list[str] | None = None) -> dict[str, Any]:
    """The job's runtime env: this checkout as working dir, minus outputs (including a custom output_root
    inside the checkout), plus the offline environment variables."""
    excludes = list(EXCLUDES)
    output_root = Path(config.run.output_root)
    if not output_root.is_absolute():
        output_root = working_dir / output_root
    inside = output_root.resolve().is_relative_to(working_dir.resolve())
    if inside and not is_object_uri(config.run.output_root):  # outside, or a bucket: nothing to exclude
        excludes.append(output_root.resolve().relative_to(working_dir.resolve()).as_posix())
    excludes += extra_excludes or []
    return {"env_vars": dict(JOB_ENV), "excludes": sorted(set(excludes))}


def ray_cli() -> str:
    """The ``ray`` executable of this interpreter's environment (the venv need not be on PATH)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.is_file() else (shutil.which("ray") or "ray")


def job_submit_command(
    address: str,
    working_dir: Path,
    env: dict[str, Any],
    entrypoint: list[str],
    submission_id: str,
    wait: bool = True,
) -> list[str]:
    """``ray job submit ... -- <entrypoint>``: the exact command this module runs (printed before it runs)."""
    command = [
        ray_cli(),
        "job",
        "submit",
        "--address",
        address,
        "--submission-id",
        submission_id,
        "--working-dir",
        str(working_dir),
        "--runtime-env-json",
        json.dumps(env, sort_keys=True),
    ]
    if not wait:
        command.append("--no-wait")
    return [*command, "--", *entrypoint]


def check_config_location(config_path: str | None, working_dir: Path) -> str | None:
    """The config path as the job sees it (relative to the uploaded working dir); it must be inside it."""
    if config_path is None:
        return None
    resolved = Path(config_path).resolve()
    try:
        return resolved.relative_to(working_dir.resolve()).as_posix()
    except ValueError:
        raise ValueError(
            f"config {config_path!r} is outside the working directory {working_dir}: the job only sees "
            "uploaded files; copy it under configs/"
        ) from None


def submit(
    address: str,
    config_path: str | None,
    overrides: list[str],
    stage: str = "all",
    working_dir: Path | None = None,
    python: str = "python",
    wait: bool = True,
    submission_id: str | None = None,
) -> int:
    """Submit the pipeline as a Ray Job and (by default) wait for it; returns 0 only when it SUCCEEDED."""
    working_dir = (working_dir or Path.cwd()).resolve()
    config = load_config(config_path, overrides)  # fail on a typo here, not minutes later on the cluster
    job_config_path = check_config_location(config_path, working_dir)
    if not is_object_uri(config.run.output_root) and not Path(config.run.output_root).is_absolute():
        print(
            f"warning: run.output_root={config.run.output_root!r} is relative: outputs land in the job's "
            "temporary working directory on the cluster. Use a shared absolute path or a bucket.",
            file=sys.stderr,
        )
    submission_id = submission_id or f"laioncele-{config.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    entrypoint = [python, "-m", "pipelines", *pipeline_args(job_config_path, overrides, stage)]
    command = job_submit_command(
        address, working_dir, runtime_env(working_dir, config), entrypoint, submission_id, wait
    )
    print("+ " + shlex.join(command), flush=True)
    rc = subprocess.call(command, cwd=working_dir)
    if rc != 0 or not wait:
        return rc
    # `ray job submit` exits 0 for a STOPPED job too: only SUCCEEDED counts as a build.
    from ray.job_submission import JobStatus, JobSubmissionClient

    status = JobSubmissionClient(address).get_job_status(submission_id)
    print(f"job {submission_id}: {status.value}")
    return 0 if status == JobStatus.SUCCEEDED else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.submit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", "-c", default=None, help="YAML config file inside this checkout")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    parser.add_argument("--stage", default="all", choices=[*ORDER, "all"], help="stage to run (default: all)")
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS") or None,
        help="Ray job server, e.g. http://head:8265 (default: $RAY_ADDRESS; unset: run locally)",
    )
    parser.add_argument("--python", default="python", help="interpreter on the cluster (default: python)")
    parser.add_argument("--submission-id", default=None, help="job id (default: laioncele-<run>-<time>)")
    parser.add_argument("--no-wait", action="store_true", help="submit and return; follow with ray job logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.address:
        from pipelines.cli import main as run_locally

        return run_locally(pipeline_args(args.config, args.overrides, args.stage))
    try:
        return submit(
            args.address,
            args.config,
            args.overrides,
            stage=args.stage,
            python=args.python,
            wait=not args.no_wait,
            submission_id=args.submission_id,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""What a data engineer meets on day one (issue 27): loud empty results, safe defaults, errors that name the
input, quiet interrupts. The pipeline runs in-process on tiny parquet inputs (``ray.executor=local``)."""

from __future__ import annotations

import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


def write_parquet(path: Path, **columns: list) -> Path:
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), path)
    return path


def run_args(stage: str, parquet: Path, out: Path, *extra: str) -> list[str]:
    args = ["run", stage, "--set", f"input.paths=[{parquet}]", "--set", f"run.output_root={out}"]
    for item in ("ray.executor=local", "ray.progress_bars=false", *extra):
        args += ["--set", item]
    return args


# ---------------------------------------------------------------------------------------------- empty results


def test_every_row_dropped_warns_with_the_stage_and_top_drop_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = write_parquet(
        tmp_path / "in.parquet",
        URL=["https://a/1.jpg", "https://a/2.jpg", "https://a/3.jpg", ""],
        TEXT=["", "   ", None, "Brad Pitt"],
    )
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    assert cli_main(run_args("ingest", parquet, tmp_path / "out")) == 0
    assert signal.getsignal(signal.SIGTERM) is sigterm_handler  # the in-process CLI restores it
    err = capsys.readouterr().err
    assert "WARNING: empty result: stage 'ingest' dropped every row (4 in, 0 out)" in err
    assert "top drop reason: empty_caption (3 of 4 rows)" in err and "missing_url=1" in err


def test_fail_on_empty_exits_non_zero_at_the_stage_that_emptied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = write_parquet(tmp_path / "empty.parquet", URL=[], TEXT=[])
    assert cli_main([*run_args("all", parquet, tmp_path / "out"), "--fail-on-empty"]) == 1
    captured = capsys.readouterr()
    assert f"stage 'ingest' read 0 rows: its input holds no rows ({parquet})" in captured.err
    assert "stopped at stage 'ingest'" in captured.err
    assert not (tmp_path / "out" / "ner").exists()  # nothing ran after the empty stage
    assert "pipeline finished" not in captured.out
    # The config key does the same, and --no-fail-on-empty overrides it.
    assert cli_main(run_args("ingest", parquet, tmp_path / "out", "run.fail_on_empty=true")) == 1
    assert (
        cli_main(
            [*run_args("ingest", parquet, tmp_path / "out", "run.fail_on_empty=true"), "--no-fail-on-empty"]
        )
        == 0
    )


def test_a_downstream_stage_names_the_empty_upstream_or_its_own_drops() -> None:
    from pipelines.empty_result import empty_result_warning
    from pipelines.stages import STAGES

    upstream_empty = {"rows": 0, "rows_in": 0, "drops": {}}
    assert "stage 'ner' read 0 rows: its upstream stage 'ingest' is empty" in str(
        empty_result_warning(STAGES["ner"], upstream_empty, [])
    )
    all_rare = {"rows": 0, "rows_in": 12, "drops": {"below_min_candidates": 9, "opt_out": 3}}
    warning = str(empty_result_warning(STAGES["candidates"], all_rare, []))
    assert "stage 'candidates' dropped every row (12 in, 0 out)" in warning
    assert "top drop reason: below_min_candidates (9 of 12 rows)" in warning
    assert empty_result_warning(STAGES["candidates"], {"rows": 1, "rows_in": 12, "drops": {}}, []) is None


def test_production_config_fails_on_empty() -> None:
    from laioncele.config import load_config

    assert load_config(REPO / "configs" / "laion5b.yaml").run.fail_on_empty
    assert not load_config(REPO / "configs" / "sample.yaml").run.fail_on_empty


# ---------------------------------------------------------------------------------------------- defaults


def test_defaults_neither_collide_with_the_sample_nor_name_a_missing_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from laioncele.config import load_config

    defaults, sample = load_config(None), load_config(REPO / "configs" / "sample.yaml")
    assert Path(defaults.run.output_root).resolve() != Path(sample.run.output_root).resolve()
    monkeypatch.chdir(tmp_path)
    assert cli_main(["run", "ingest", "--set", "ray.executor=local"]) == 1
    err = capsys.readouterr().err
    assert "input.paths is empty" in err and "--config configs/sample.yaml" in err
    assert not (tmp_path / "output" / "sample").exists()


def test_config_mismatch_names_both_hashes_and_suggests_a_new_output_root_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from laioncele.config import load_config
    from laioncele.io.shards import load_manifest
    from pipelines.runner import stage_config_hash
    from pipelines.stages import STAGES

    parquet = write_parquet(tmp_path / "in.parquet", URL=["https://a/1.jpg"], TEXT=["Brad Pitt on set"])
    out = tmp_path / "out"
    assert cli_main(run_args("ingest", parquet, out)) == 0
    built = load_manifest(out / "ingest")["config_hash"]
    changed = run_args("ingest", parquet, out, "ingest.min_width=64")
    current = stage_config_hash(STAGES["ingest"], load_config(None, changed[3::2]))
    assert built != current
    capsys.readouterr()
    assert cli_main(changed) == 1
    err = capsys.readouterr().err
    assert built in err and current in err
    assert "Delete it" not in err
    assert err.index("run.output_root=") < err.index("run.overwrite=true")
    assert load_manifest(out / "ingest")["config_hash"] == built  # the old build is untouched


# ---------------------------------------------------------------------------------------------- input errors


def _no_ray(config) -> None:  # tripwire: the input checks must fail before any Ray work
    raise AssertionError("Ray was started before the input was checked")


def test_a_non_parquet_input_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "metadata.parquet"
    bad.write_text("URL,TEXT\nhttps://a/1.jpg,Brad Pitt\n")
    assert cli_main(run_args("ingest", bad, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert f"input file {bad} cannot be read as parquet" in err and "Traceback" not in err


def test_missing_columns_fail_in_the_driver_naming_the_file_and_laion_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pipelines.runner

    monkeypatch.setattr(pipelines.runner, "ensure_ray", _no_ray)
    good = write_parquet(tmp_path / "a.parquet", URL=["https://a/1.jpg"], TEXT=["Brad Pitt"])
    bad = write_parquet(tmp_path / "b.parquet", URL=["https://a/2.jpg"], CAPTION_TEXT=["Brad Pitt"])
    args = run_args("ingest", good, tmp_path / "out", "ray.executor=ray", f"input.paths=[{good}, {bad}]")
    assert cli_main(args) == 1
    err = capsys.readouterr().err
    assert f"input file {bad} lacks LAION column(s) TEXT" in err
    assert "'CAPTION_TEXT'" in err and "Traceback" not in err


def test_unknown_input_columns_are_reported(tmp_path: Path) -> None:
    import logging

    from laioncele.io.shards import read_shards

    parquet = write_parquet(
        tmp_path / "in.parquet", URL=["https://a/1.jpg"], TEXT=["Brad Pitt"], LICENSE=["?"], NSFW=["UNLIKELY"]
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("laioncele.ingest")
    logger.addHandler(
        handler
    )  # not caplog: its root handler misses records once the CLI has configured Ray's logging
    try:
        assert cli_main(run_args("ingest", parquet, tmp_path / "out")) == 0
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "not kept by ingest (dropped): NSFW, in 1 file(s)" in warnings[0]
    assert str(parquet) in warnings[0]
    columns = read_shards(tmp_path / "out" / "ingest").column_names
    assert "NSFW" not in columns and "license" in columns  # LAION's LICENSE is kept, under its own name


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  output_root: out\n ingest:\n  min_width: 3\n")
    assert cli_main(["show-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"config file '{path}' is not valid YAML: line 3, column 2" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-2"])
def test_ray_num_cpus_must_be_positive(value: str) -> None:
    from laioncele.config import load_config

    with pytest.raises(ValueError, match=r"ray\.num_cpus.*greater than 0"):
        load_config(None, [f"ray.num_cpus={value}"])


# ---------------------------------------------------------------------------------------------- resume


def test_a_resume_with_no_units_left_does_not_redo_the_names_aggregation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from laioncele.io.shards import load_manifest

    people = ["Brad Pitt", "Angelina Jolie", "Tom Hanks"]
    captions = [f"{p} at the {e} premiere" for p in people for e in ("Cannes", "Venice", "London", "Berlin")]
    parquet = write_parquet(
        tmp_path / "in.parquet", URL=[f"https://a/{i}.jpg" for i in range(len(captions))], TEXT=captions
    )
    out = tmp_path / "out"
    extra = ("names.min_candidates=2", "names.second_pass_min_count=2")
    for stage in ("ingest", "ner", "names", "candidates"):
        assert cli_main(run_args(stage, parquet, out, *extra)) == 0
    assert load_manifest(out / "candidates")["rows"] > 0
    aggregated = [
        out / "names" / "known_names.json",
        out / "candidates" / "kept_pairs.ipc",
        out / "candidates" / "names_table" / "manifest.json",
    ]
    before = {path: path.stat().st_mtime_ns for path in aggregated}
    shards = {stage: load_manifest(out / stage)["shards"] for stage in ("names", "candidates")}
    # Interrupted after every unit committed, before the manifests: the resume has 0 units to run.
    for stage in ("names", "candidates"):
        (out / stage / "manifest.json").unlink()
    capsys.readouterr()
    for stage in ("names", "candidates"):
        assert cli_main(run_args(stage, parquet, out, *extra)) == 0
        assert load_manifest(out / stage)["shards"] == shards[stage]
    assert "[names] 1 units, 1 already committed, 0 to run" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in aggregated} == before


# ---------------------------------------------------------------------------------------------- interrupts


def interrupt_cli(parquet: Path, out: Path, signum: int, *extra: str) -> tuple[int, str]:
    """Run ``python -m pipelines run ingest`` in its own process, send ``signum`` once 3 units are committed,
    and return its exit code and output."""
    import os
    import subprocess
    import sys
    import time

    from laioncele.io.shards import UNITS_DIR

    cmd = [sys.executable, "-m", "pipelines", "run", "ingest"]
    for item in (f"input.paths=[{parquet}]", f"run.output_root={out}", "ingest.rows_per_unit=100", *extra):
        cmd += ["--set", item]
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    units = out / "ingest" / UNITS_DIR
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if units.is_dir() and len(list(units.glob("*.json"))) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signum)
    try:
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, output.decode()


@pytest.fixture(scope="module")
def laion_200_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from laioncele.synth.laion import write_laion_parquet

    path = tmp_path_factory.mktemp("laion") / "part-0.parquet"
    return write_laion_parquet(path, 20_000, seed=7, row_group_size=100)


@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_a_rerun_resumes(
    laion_200_units: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    from laioncele.io.shards import load_manifest

    out = tmp_path / "out"
    rc, output = interrupt_cli(
        laion_200_units, out, signal.SIGINT, "ray.executor=local", "ray.progress_bars=false"
    )
    assert not (out / "ingest" / "manifest.json").exists(), "the run finished before it could be interrupted"
    assert rc == 130, output
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    match = re.fullmatch(
        r"interrupted \(Ctrl-C\) in stage 'ingest', (\d+) of 200 units committed; .*rerun.*", last
    )
    assert match and int(match.group(1)) >= 3, last
    # The same command again resumes: only the units not committed run.
    capsys.readouterr()
    assert cli_main(run_args("ingest", laion_200_units, out, "ingest.rows_per_unit=100")) == 0
    assert f"200 units, {match.group(1)} already committed" in capsys.readouterr().out
    assert load_manifest(out / "ingest")["rows_in"] == 20_000


@pytest.mark.ray
@pytest.mark.slow
def test_sigterm_on_ray_prints_one_line_and_no_c_stack_dump(laion_200_units: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, output = interrupt_cli(
        laion_200_units,
        out,
        signal.SIGTERM,
        "ingest.concurrency=1",
        "ray.num_cpus=1",
        "ray.progress_bars=false",
    )
    assert not (out / "ingest" / "manifest.json").exists(), "the run finished before it could be interrupted"
    assert rc == 143, output
    # Ray's core library used to print "*** SIGTERM received ... PC: @ 0x..." and abort (exit 134).
    assert "SIGTERM received" not in output and "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and "(SIGTERM) in stage 'ingest'" in lines[0] and "rerun" in lines[0], output

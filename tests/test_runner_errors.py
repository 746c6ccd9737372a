"""Runner errors a first-time user meets, checked without starting Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from laioncele.config import load_config
from laioncele.io.shards import ShardError
from pipelines.runner import stage_config_hash
from pipelines.stages import STAGES


def test_a_stage_run_before_its_upstream_says_which_stage_to_run_first(tmp_path: Path) -> None:
    config = load_config("configs/sample.yaml", [f"run.output_root={tmp_path / 'out'}"])
    with pytest.raises(ShardError, match=r"reads stage 'ingest', which has not finished .*run ingest"):
        stage_config_hash(STAGES["ner"], config)

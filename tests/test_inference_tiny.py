"""The offline inference example (docs/inference_offline.md) runs as written, with the tiny SDXL helper."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from inference.pipeline import load_sdxl, text_name_embedding
from inference.tiny import CROSS_ATTENTION_DIM, save_tiny_sdxl

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "inference_offline.md"


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def test_the_saved_tiny_sdxl_is_a_diffusers_folder_the_loader_reads(tmp_path: Path) -> None:
    folder = save_tiny_sdxl(tmp_path / "tiny")
    assert (folder / "model_index.json").is_file() and (folder / "unet").is_dir()
    pipe = load_sdxl(folder, progress_bar=False)
    assert tuple(text_name_embedding(pipe, "Cher").shape) == (1, 8, CROSS_ATTENTION_DIM)


def test_the_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = doc_blocks("python")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {})
    with Image.open(tmp_path / "brad_pitt_tiny.png") as image:
        assert image.size == (64, 64)


@pytest.mark.slow
def test_the_command_line_example_runs(tmp_path: Path) -> None:
    (script,) = doc_blocks("bash")
    commands = [line.split("#")[0] for line in script.replace("\\\n", " ").splitlines() if line.strip()]
    assert len(commands) == 2
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in commands:
        args = [
            sys.executable if a == ".venv/bin/python" else a.replace("/tmp/", f"{tmp_path}/")
            for a in shlex.split(command)
        ]
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    with Image.open(tmp_path / "surfing.png") as image:
        assert image.size == (64, 64)

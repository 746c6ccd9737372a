"""The stats notebook runs headless with the command docs/notebooks.md gives (nbconvert, a dev extra)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from dataset_fixture import build_fake_dataset

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "notebooks.md"


@pytest.mark.slow
def test_the_documented_nbconvert_command_executes_the_notebook(tmp_path: Path) -> None:
    fake = build_fake_dataset(tmp_path / "run", n_identities=5, seed=1)
    (block,) = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    words = shlex.split(block.replace("\\\n", " "))
    env_words = [w for w in words if re.fullmatch(r"[A-Z_]+=.*", w)]
    command = words[len(env_words) :]
    assert command[:2] == [".venv/bin/jupyter", "nbconvert"] and "--execute" in command
    # the same command, on the synthetic run and into tmp_path
    command[0] = str(Path(sys.executable).parent / "jupyter")
    command[command.index("--output-dir") + 1] = str(tmp_path / "out")
    env = {**os.environ, **dict(w.split("=", 1) for w in env_words), "LAIONCELE_RUN_DIR": str(fake.run_dir)}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    executed = json.loads((tmp_path / "out" / "dataset_stats.ipynb").read_text())
    outputs = [
        o for cell in executed["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])
    ]
    text = "\n".join(
        "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert f"run: {fake.run_dir}" in text and fake.impure_identity in text
    assert not [o for o in outputs if o.get("output_type") == "error"]

"""The flat module paths of before the stage packages still import, as the very modules that replaced them."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from laioncele._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module(old: str) -> None:
    module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__name__ == MOVED[old] and module.__spec__.name == MOVED[old]  # its own identity kept


@pytest.mark.parametrize(
    ("package", "module", "name"),
    [
        ("laioncele.names", "laioncele.names.extract", "NameExtractor"),
        ("laioncele.download", "laioncele.download.fetch", "Downloader"),
        ("laioncele.identity", "laioncele.identity.clean", "clean_identities"),
        ("laioncele.targets", "laioncele.targets.encode", "encode_names"),
        ("laioncele.report", "laioncele.report.html", "write_report"),
    ],
)
def test_package_that_was_a_module_serves_its_names(package: str, module: str, name: str) -> None:
    assert getattr(importlib.import_module(package), name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = importlib.import_module(package).no_such_name


def test_old_path_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "laioncele.laion_synth", "--help"], capture_output=True, text=True, check=True
    )
    assert "--rows" in out.stdout

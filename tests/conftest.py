"""Shared test fixtures. Tests that read ../shared/ skip with a clear reason when it is absent.

The labelled face photos are also shipped in ``sample/images/`` (byte-identical, same ``labels.csv``), so the
tests that need them read that copy and run on a fresh clone. ``LAIONCELE_SHARED_DIR`` points the shared
fixtures somewhere else (a missing path shows what a fresh clone skips).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import laioncele.offline_env  # noqa: F401  (the entry points' offline env defaults, before any test imports)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LAIONCELE_SHARED_DIR", REPO_ROOT.parent / "shared"))
SAMPLE_FACES = REPO_ROOT / "sample" / "images"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared fixtures folder at {SHARED} (not present in this checkout)")
    return SHARED


@pytest.fixture(scope="session")
def face_photos() -> Path:
    """The 64 labelled photos of 13 public figures with ``labels.csv``: the copy the repo ships (no ../shared)."""
    return SAMPLE_FACES


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray instance (2 CPUs) shared by every Ray test: start-up costs ~10 s."""
    import ray

    from laioncele.config import RayConfig
    from pipelines.runtime import ensure_ray

    ensure_ray(RayConfig(num_cpus=2, progress_bars=False))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_reference(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clean local build of the embedded sample (``tests/sample_build.py``), shared by every test module
    that compares against it (the fault tests, the object-store build): built at most once per session."""
    from sample_build import build

    out = tmp_path_factory.mktemp("reference") / "sample"
    build(out)
    return out

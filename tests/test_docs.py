"""What the README and docs/ state matches the code: schema versions, links, the Polars snippet, sourced figures."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from laioncele.config import Config
from laioncele.io import schema

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
STAGES_DOC = (REPO / "docs" / "stages.md").read_text()
DOCS = sorted((REPO / "docs").glob("*.md"))
README_MAX_LINES = 150

# Pages another branch of the same issue adds; the README links them already. Remove an entry once it is merged.
ADDED_BY_OTHER_BRANCHES: set[str] = set()  # docs a branch links before another branch adds them

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_stages_doc_states_each_schema_version() -> None:
    versions = dict(schema.schema_id(v) for v in vars(schema).values() if isinstance(v, pa.Schema))
    sentence = re.search(
        r"All schemas are in `laioncele/io/schema.py`, version 1 each except (.*?)\. ", STAGES_DOC, re.S
    )
    assert sentence, "docs/stages.md's schema-version sentence is missing"
    stated = {name: int(v) for name, v in re.findall(r"`(\w+)`\s+\(v(\d+)", sentence.group(1))}
    assert stated == {name: version for name, version in versions.items() if version != 1}


def test_the_readme_is_a_front_door() -> None:
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '#' in a code block is no heading
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", [REPO / "README.md", *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not ours to check
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if linked.relative_to(REPO).as_posix() in ADDED_BY_OTHER_BRANCHES and not linked.exists():
            continue
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(REPO / target.partition("#")[0]).resolve() for target in LINK.findall(README)}
    unlinked = [p.name for p in DOCS if p.resolve() not in linked]
    assert not unlinked, f"README.md links no {unlinked}"
    assert all((REPO / p).resolve() in linked for p in ADDED_BY_OTHER_BRANCHES)


def test_the_readme_polars_snippet_runs_on_a_built_dataset(tmp_path: Path) -> None:
    from dataset_fixture import build_fake_dataset

    snippet = re.search(r"## Reading the dataset with Polars\n+```python\n(.*?)```", README, re.S)
    assert snippet, "README.md's Polars snippet is missing"
    code = snippet.group(1)
    assert code.count('"output/sample"') == 1, "the snippet names the run directory once"
    fake = build_fake_dataset(tmp_path)
    namespace: dict[str, Any] = {}
    exec(code.replace('"output/sample"', repr(str(fake.run_dir))), namespace)  # noqa: S102 (our own README)
    per_identity = namespace["per_identity"]
    assert (
        dict(zip(per_identity["identity_id"], per_identity["images"], strict=True))
        == fake.images_per_identity
    )
    assert per_identity["images"].to_list() == sorted(fake.images_per_identity.values(), reverse=True)


def _resolves(tree: Any, parts: list[str]) -> bool:
    for part in parts:
        if isinstance(tree, dict) and part in tree:
            tree = tree[part]
        elif not isinstance(tree, dict) and hasattr(tree, part):
            tree = getattr(tree, part)
        else:
            return False
    return True


@pytest.mark.parametrize("page", [REPO / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_results_key_a_doc_names_exists(page: Path) -> None:
    """A figure's source, `benchmark.key.path`, is a key of bench/results.json (or a config knob of that name)."""
    results = json.loads((REPO / "bench" / "results.json").read_text())
    config = Config()
    named = set(re.findall(r"`([a-z_]+(?:\.[A-Za-z0-9_\-]+)+)`", page.read_text()))
    keys = {k for k in named if k.split(".")[0] in results and not re.search(r"\.(py|md|json|txt|yaml)$", k)}
    missing = sorted(
        k for k in keys if not _resolves(results, k.split(".")) and not _resolves(config, k.split("."))
    )
    assert not missing, f"{page.name} names results.json keys that do not exist: {missing}"

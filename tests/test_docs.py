"""What the README states about the code's contracts matches the code."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from laioncele import schema

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_readme_states_each_schema_version() -> None:
    versions = dict(schema.schema_id(v) for v in vars(schema).values() if isinstance(v, pa.Schema))
    sentence = re.search(
        r"All schemas are in `laioncele/schema.py`, version 1 each except (.*?)\. ", README, re.S
    )
    assert sentence, "the README's schema-version sentence is missing"
    stated = {name: int(v) for name, v in re.findall(r"`(\w+)`\s+\(v(\d+)", sentence.group(1))}
    assert stated == {name: version for name, version in versions.items() if version != 1}

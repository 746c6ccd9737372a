"""``python -m pipelines describe``: the stage graph as declared (inputs, schemas, side outputs, config hashes).

The hash shown for each stage is the one the current config gives it when every stage it reads is built with
the same config (``expected_config_hashes``); beside it, the hash its output under ``run.output_root`` was built
with, so a stale or missing stage shows before a run.
"""

from __future__ import annotations

from typing import Any

from laioncele.config import Config
from laioncele.io.schema import schema_id
from laioncele.io.shards import MANIFEST_NAME, load_manifest
from laioncele.io.storage import configure
from pipelines.runner import chain_config_hash, stage_dir
from pipelines.stages import ORDER, STAGES


def expected_config_hashes(config: Config) -> dict[str, str]:
    """Stage name -> the config hash a build of the whole graph with ``config`` gives it (data-flow order)."""
    hashes: dict[str, str] = {}
    for name in ORDER:
        stage = STAGES[name]
        unknown = [i for i in stage.inputs if i not in hashes]
        if unknown:
            raise ValueError(f"stage {name!r} reads {unknown}, which do not come before it in the order")
        hashes[name] = chain_config_hash(stage, config, [hashes[i] for i in stage.inputs])
    return hashes


def describe_stages(config: Config) -> list[dict[str, Any]]:
    """One record per stage: inputs, config sections, output schema, side outputs (each with the step that
    writes it), expected and built config hash."""
    configure(config.storage)
    expected = expected_config_hashes(config)
    records = []
    for name in ORDER:
        stage = STAGES[name]
        out_dir = stage_dir(config, name)
        built = load_manifest(out_dir).get("config_hash") if (out_dir / MANIFEST_NAME).is_file() else None
        schema_name, version = schema_id(stage.schema) or (name, 0)
        records.append(
            {
                "stage": name,
                "description": stage.description,
                "upstream": stage.upstream,
                "inputs": list(stage.inputs),
                "config_sections": [*stage.config_sections, *stage.extra_sections],
                "schema": {
                    "name": schema_name,
                    "version": version,
                    "columns": {field.name: str(field.type) for field in stage.schema},
                },
                "output": str(out_dir),
                "side_outputs": [
                    {"path": s.path, "step": s.step, "description": s.description} for s in stage.side_outputs
                ],
                "config_hash": expected[name],
                "built_config_hash": built,
                "status": "missing" if built is None else "complete" if built == expected[name] else "stale",
            }
        )
    return records


def format_description(records: list[dict[str, Any]]) -> str:
    """The records as text: one block per stage."""
    lines = []
    for r in records:
        schema = r["schema"]
        built = r["built_config_hash"] or "-"
        lines.append(f"{r['stage']}: {r['description']}")
        lines.append(f"  inputs:   {', '.join(r['inputs']) or 'LAION parquet (input.paths)'}")
        lines.append(f"  config:   {', '.join(r['config_sections'])}")
        lines.append(f"  hash:     {r['config_hash']} (built: {built}, {r['status']}) under {r['output']}")
        for side in r["side_outputs"]:
            lines.append(f"  side:     {side['path']} ({side['step']}): {side['description']}")
        lines.append(f"  schema:   {schema['name']} v{schema['version']}")
        lines.extend(f"    {column}: {type_}" for column, type_ in schema["columns"].items())
    return "\n".join(lines) + "\n"

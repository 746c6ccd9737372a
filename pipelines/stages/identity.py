"""Identity stage: faces + the names their captions carry -> one clean identity per name (``clean_identities``).

One global unit: alias merging needs every name's centroid at once. ``clean_identities`` is vectorised over all
names (batched matmuls, faiss for large names and for the global alias index): 1M faces over 50k names clean in
about a minute on 2 cores (``make bench``), so the paper's scale (~810k kept images) fits one worker; the unit runs
as a Ray task on whichever node has the memory. The kept images are this stage's shards; the identities table is
written beside them in ``identities/table/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from laioncele import schema
from laioncele.config import Config
from laioncele.identity import clean_identities
from laioncele.shards import UnitRecord, finalize_stage, iter_shards, read_shards
from pipelines.runner import UnitTask, stage_config_hash, stage_dir
from pipelines.stage import Resources, Stage, Unit

TABLE_DIR = "table"


def load_faces_with_names(config: Config) -> pa.Table:
    """Faces (status ok) joined with their caption's names (display form) and image hash."""
    display = {}
    names_table = stage_dir(config, "candidates") / "names_table"
    for row in read_shards(names_table, columns=["name_key", "display_name"]).to_pylist():
        display[row["name_key"]] = row["display_name"]
    per_sample: dict[str, tuple[list[str], str]] = {}
    for _, shard in iter_shards(stage_dir(config, "download"), columns=["sample_id", "names", "sha256"]):
        for sid, names, sha in zip(
            *(shard.column(c).to_pylist() for c in ("sample_id", "names", "sha256")), strict=True
        ):
            per_sample[sid] = ([display.get(n, n) for n in names or []], sha)
    faces = read_shards(
        stage_dir(config, "faces"),
        columns=["sample_id", "face_index", "bbox", "det_score", "embedding", "backend"],
    )
    sample_ids = faces.column("sample_id").to_pylist()
    names = pa.array([per_sample.get(s, ([], None))[0] for s in sample_ids], pa.list_(pa.string()))
    hashes = pa.array([per_sample.get(s, ([], None))[1] for s in sample_ids], pa.string())
    return faces.append_column("names", names).append_column(config.identity.hash_column, hashes)


class IdentityTask(UnitTask):
    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        faces = load_faces_with_names(self.config)
        result = clean_identities(faces, self.config.identity)
        stats = {
            "name_drops": result.name_drops,
            "face_drops": result.face_drops,
            "identities": result.identities.num_rows,
            "pairs_in": int(sum(result.drops.values()) + result.images.num_rows),
        }
        self.write(
            unit_id,
            schema.conform(result.identities, schema.IDENTITIES),
            schema.IDENTITIES,
            result.identities.num_rows,
            {},
            ["faces"],
            out_dir=self.out_dir / TABLE_DIR,
        )
        images = schema.conform(result.images, schema.IDENTITY_IMAGES)
        return self.write(
            unit_id, images, schema.IDENTITY_IMAGES, faces.num_rows, result.drops, ["faces"], stats
        )


def plan(config: Config, upstream_dir: Path | None) -> list[Unit]:
    return [Unit("all", {})]


def finish(config: Config, out_dir: Path) -> dict[str, Any]:
    manifest = finalize_stage(
        out_dir / TABLE_DIR,
        "identities_table",
        schema.IDENTITIES,
        stage_config_hash(IDENTITY_STAGE, config),
        ["all"],
    )
    return {"identities": manifest["rows"], "table": f"{TABLE_DIR}/manifest.json"}


IDENTITY_STAGE = Stage(
    name="identities",
    schema=schema.IDENTITY_IMAGES,
    config_sections=("identity",),
    upstream="faces",
    plan=plan,
    task=IdentityTask,
    resources=lambda config: Resources(concurrency=1, num_cpus=1),
    finish=finish,
    description="one true identity per name (faiss), aliases merged, one face per image",
)

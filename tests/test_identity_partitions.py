"""Identity cleaning partitioned by name and merged: same quality as the global run, aliases across partitions."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from laioncele.config import Config, IdentityConfig
from laioncele.identity.clean import clean_identities, name_key
from laioncele.identity.merge import merge_partitions, partition_of, split_by_partition
from laioncele.io import schema
from laioncele.io.shards import finalize_stage, read_shards, write_unit
from laioncele.synth.embeddings import SyntheticSpec, evaluate, generate

P = 4


def _partitioned(faces: pa.Table, partitions: int = P, config: IdentityConfig | None = None):
    parts = split_by_partition(faces, partitions)
    return merge_partitions([clean_identities(p, config) for p in parts], config)


@pytest.fixture(scope="module")
def corpus():
    return generate(SyntheticSpec(n_names=300, seed=12, mislabel_rate=0.3, alias_rate=0.15))


@pytest.fixture(scope="module")
def merged(corpus):
    return _partitioned(corpus.faces)


def test_partition_of_is_stable_and_uses_the_name_key():
    assert partition_of("Tom  Hanks", 7) == partition_of("tom hanks", 7)
    assert {partition_of(f"name {i}", 4) for i in range(50)} == set(range(4))
    assert all(partition_of(f"name {i}", 1) == 0 for i in range(5))


def test_split_sends_a_row_to_each_partition_of_its_names_with_only_those_names(corpus):
    faces = corpus.faces
    parts = split_by_partition(faces, P)
    keys_per_row = [{name_key(n) for n in names or []} for names in faces.column("names").to_pylist()]
    expected = Counter()
    for row, keys in enumerate(keys_per_row):
        for p in {partition_of(k, P) for k in keys if k} or {0}:
            expected[
                (p, faces.column("sample_id")[row].as_py(), faces.column("face_index")[row].as_py())
            ] += 1
    got = Counter()
    for p, part in enumerate(parts):
        for sid, fi, names in zip(*(part.column(c).to_pylist() for c in ("sample_id", "face_index", "names")), strict=True):  # fmt: skip
            assert all(partition_of(n, P) == p for n in names)
            got[(p, sid, fi)] += 1
    assert got == expected
    assert any(
        len({partition_of(k, P) for k in keys}) > 1 for keys in keys_per_row
    )  # multi-partition rows exist


def test_precision_recall_and_accounting_match_the_global_bar(corpus, merged):
    metrics = evaluate(merged, corpus)
    assert metrics["eligible"] > 1000
    assert metrics["precision"] >= 0.98, metrics
    assert metrics["recall"] >= 0.90, metrics
    # Every candidate (image, name) ends kept or dropped under one reason: names partition exactly.
    global_result = clean_identities(corpus.faces)
    assert merged.stats["candidates_in"] == global_result.stats["candidates_in"]
    assert merged.stats["candidates_in"] == merged.images.num_rows + sum(merged.drops.values())
    assert merged.stats["kept"] == merged.images.num_rows
    assert merged.stats["identities"] == merged.identities.num_rows
    # Tables agree with each other.
    counts = Counter(merged.images.column("identity_id").to_pylist())
    assert dict(zip(*(merged.identities.column(c).to_pylist() for c in ("identity_id", "n_images")), strict=True)) == counts  # fmt: skip
    assert min(counts.values()) >= IdentityConfig().min_images
    kept_names = pc.is_in(merged.names.column("outcome"), pa.array(["kept", "split"])).to_numpy(
        zero_copy_only=False
    )
    assert set(merged.names.filter(pa.array(kept_names)).column("identity_id").to_pylist()) == set(counts)
    assert merged.name_drops == dict(Counter(o for o in merged.names.column("outcome").to_pylist() if o not in ("kept", "split")))  # fmt: skip


def test_no_face_kept_twice_and_one_row_per_identity_and_image(merged):
    faces = list(
        zip(*(merged.images.column(c).to_pylist() for c in ("sample_id", "face_index")), strict=True)
    )
    assert len(faces) == len(set(faces))
    pairs = list(
        zip(*(merged.images.column(c).to_pylist() for c in ("identity_id", "sample_id")), strict=True)
    )
    assert len(pairs) == len(set(pairs))


def test_namesakes_are_never_merged(corpus, merged):
    rows = merged.images.join(corpus.truth_faces, ["sample_id", "face_index"], join_type="left outer")
    namesake_people = {p for k in corpus.namesake_keys for p in corpus.name_persons[k]}
    people: dict[str, set[int]] = {}
    for ident, person in zip(
        *(rows.column(c).to_pylist() for c in ("identity_id", "person_id")), strict=True
    ):
        if person in namesake_people:
            people.setdefault(ident, set()).add(person)
    assert corpus.namesake_keys
    assert all(len(p) == 1 for p in people.values()), people


def test_aliases_in_different_partitions_merge_like_the_global_run(corpus, merged):
    global_sets = [set(a) for a in clean_identities(corpus.faces).identities.column("alias_keys").to_pylist()]
    sets = [set(a) for a in merged.identities.column("alias_keys").to_pylist()]
    cross = [pair for pair in corpus.alias_keys if partition_of(pair[0], P) != partition_of(pair[1], P)]
    merged_globally = [pair for pair in cross if any(set(pair) <= s for s in global_sets)]
    assert len(merged_globally) >= 10
    found = [pair for pair in merged_globally if any(set(pair) <= s for s in sets)]
    # An alias merge can differ only where a partition already dropped one name's small identity.
    assert len(found) >= 0.9 * len(merged_globally), (len(found), len(merged_globally))
    assert merged.stats["names_merged_as_aliases"] >= len(found)


def _person(rng: np.random.Generator, centre: np.ndarray, n: int) -> np.ndarray:
    x = 0.8 * centre + 0.6 * rng.standard_normal((n, len(centre))) / np.sqrt(len(centre))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _two_names_one_person(first: str, second: str, shared_face: bool) -> pa.Table:
    """One person: 8 photos captioned ``first``, 8 captioned ``second``; optionally photo 0 carries both."""
    rng = np.random.default_rng(3)
    centre = rng.standard_normal(64)
    centre /= np.linalg.norm(centre)
    emb = _person(rng, centre, 16)
    names = [[first]] * 8 + [[second]] * 8
    if shared_face:
        names[0] = [first, second]
    return pa.table(
        {
            "sample_id": [f"s{i}" for i in range(16)],
            "names": pa.array(names, pa.list_(pa.string())),
            "face_index": pa.array([0] * 16, pa.int32()),
            "embedding": pa.array(list(emb), pa.list_(pa.float32())),
        }
    )


def test_explicit_alias_pair_across_partitions_merges_and_shares_faces_once():
    first = "Alpha Person"
    second = next(
        n for n in (f"Beta Person {i}" for i in range(100)) if partition_of(n, P) != partition_of(first, P)
    )
    faces = _two_names_one_person(first, second, shared_face=True)
    parts = split_by_partition(faces, P)
    assert sum(p.num_rows > 0 for p in parts) == 2
    results = [clean_identities(p) for p in parts]
    assert sum(r.identities.num_rows for r in results) == 2  # each partition alone sees one name
    merged = merge_partitions(results)
    assert merged.identities.num_rows == 1
    assert sorted(merged.identities.column("alias_keys")[0].as_py()) == sorted(
        [name_key(first), name_key(second)]
    )
    assert merged.images.num_rows == 16  # photo 0 kept once though both partitions kept it
    assert merged.drops == {"alias_same_image": 1}
    assert merged.stats["candidates_in"] == 17 == merged.images.num_rows + sum(merged.drops.values())
    assert set(merged.names.column("identity_id").to_pylist()) == {
        merged.identities.column("identity_id")[0].as_py()
    }
    centroid = np.array(merged.identities.column("centroid")[0].as_py())
    assert abs(np.linalg.norm(centroid) - 1) < 1e-4


def test_same_bytes_under_two_aliases_collapse_after_the_merge():
    first = "Alpha Person"
    second = next(
        n for n in (f"Beta Person {i}" for i in range(100)) if partition_of(n, P) != partition_of(first, P)
    )
    faces = _two_names_one_person(first, second, shared_face=False)
    hashes = [f"h{i}" for i in range(16)]
    hashes[9] = hashes[1]  # one photo posted under both names (re-hosted), same bytes
    faces = faces.append_column("image_sha256", pa.array(hashes, pa.string()))
    merged = merge_partitions([clean_identities(p) for p in split_by_partition(faces, P)])
    assert merged.identities.num_rows == 1
    assert merged.drops == {"duplicate_image": 1}
    assert merged.images.num_rows == 15 == merged.identities.column("n_images")[0].as_py()
    assert len(set(merged.images.column("image_sha256").to_pylist())) == 15


def test_face_kept_by_two_different_people_goes_to_the_closer_one():
    # Two people in different partitions; one photo captioned with both names shows a face between them,
    # closer to A: each partition alone keeps it (above ``keep`` for both), the merge keeps it under A only.
    rng = np.random.default_rng(5)
    a, b = np.linalg.qr(rng.standard_normal((64, 2)))[0].T  # orthonormal centres: clearly two people
    first = "Gamma Person"
    second = next(
        n for n in (f"Delta Person {i}" for i in range(100)) if partition_of(n, P) != partition_of(first, P)
    )
    between = (0.85 * a + 0.55 * b) / np.linalg.norm(0.85 * a + 0.55 * b)
    emb = np.concatenate([_person(rng, a, 8), _person(rng, b, 8), between[None].astype(np.float32)])
    faces = pa.table(
        {
            "sample_id": [f"s{i}" for i in range(17)],
            "names": pa.array([[first]] * 8 + [[second]] * 8 + [[first, second]], pa.list_(pa.string())),
            "face_index": pa.array([0] * 17, pa.int32()),
            "embedding": pa.array(list(emb), pa.list_(pa.float32())),
        }
    )
    results = [clean_identities(p) for p in split_by_partition(faces, P)]
    claimed = [r.images.filter(pc.equal(r.images.column("sample_id"), "s16")).num_rows for r in results]
    assert sum(claimed) == 2  # both partitions kept the shared face
    merged = merge_partitions(results)
    assert merged.identities.num_rows == 2  # not an alias: the two people stay apart
    rows = merged.images.filter(pc.equal(merged.images.column("sample_id"), "s16"))
    assert rows.column("identity_id").to_pylist() == [name_key(first)]
    assert merged.drops == {"face_claimed_by_other_identity": 1}
    assert merged.stats["candidates_in"] == 18 == merged.images.num_rows + sum(merged.drops.values())


def test_single_partition_is_the_global_result(corpus):
    config = IdentityConfig()
    (only,) = split_by_partition(corpus.faces, 1)
    assert only is corpus.faces
    result = clean_identities(only, config)
    assert merge_partitions([result], config) is result


def test_stage_partition_units_and_finish_write_the_merged_result(tmp_path, monkeypatch, corpus):
    from pipelines.runner import stage_config_hash
    from pipelines.stages import identity as stage

    config = Config.model_validate({"run": {"output_root": str(tmp_path)}, "identity": {"partitions": 3}})
    # Finished (empty) input stages: the stage's config hash chains each declared input's manifest hash.
    empty = schema.IDENTITIES.empty_table()
    for name in stage.IDENTITY_STAGE.inputs:
        write_unit(tmp_path / name, "u", empty, schema.IDENTITIES, config_hash="upstream", rows_in=0)
        finalize_stage(tmp_path / name, name, schema.IDENTITIES, "upstream", ["u"])
    faces = corpus.faces.select(["sample_id", "names", "face_index", "embedding"])
    # Two faces shards: each partition unit streams them and keeps only its own rows.
    half = faces.num_rows // 2
    monkeypatch.setattr(stage, "iter_faces_with_names", lambda _config: iter([faces[:half], faces[half:]]))
    out_dir = tmp_path / "identities"
    config_hash = stage_config_hash(stage.IDENTITY_STAGE, config)
    units = stage.plan(config, None)
    assert [u.unit_id for u in units] == ["p00000", "p00001", "p00002", "merged"]
    task = stage.IdentityTask(config.model_dump(mode="json"), str(out_dir), config_hash)
    for unit in units:
        out = task({"unit_id": [unit.unit_id], "payload": [json.dumps(unit.payload)]})
        assert out["error"] == [""], out["error"]
    extra = stage.finish(config, out_dir)
    manifest = finalize_stage(
        out_dir, "identities", schema.IDENTITY_IMAGES, config_hash, [u.unit_id for u in units]
    )
    expected = _partitioned(faces, 3, config.identity)
    images = read_shards(out_dir)
    assert images.num_rows == expected.images.num_rows == manifest["rows"]
    assert manifest["drops"] == expected.drops
    # counted in candidates ((image, name) pairs), each kept or dropped; the faces read are a statistic
    assert (
        manifest["rows_in"]
        == expected.stats["candidates_in"]
        == manifest["rows"] + sum(expected.drops.values())
    )
    assert manifest["stats"]["faces_in"] == faces.num_rows
    assert (
        read_shards(out_dir / stage.TABLE_DIR).num_rows == expected.identities.num_rows == extra["identities"]
    )
    assert images.column("identity_id").to_pylist() == expected.images.column("identity_id").to_pylist()
    # The P == 1 plan is today's single global unit.
    assert [u.unit_id for u in stage.plan(Config(), None)] == ["all"]

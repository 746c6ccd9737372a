"""Corpus-wide name aggregation: counting distinct samples, min_candidates, per-name cap, opt-out."""

from __future__ import annotations

import pyarrow as pa

from laioncele import schema
from laioncele.name_index import aggregate_names, count_names, explode_mentions, select_kept


def samples(rows: list[tuple[str, list[str], float]]) -> pa.Table:
    return pa.table(
        {
            "sample_id": [r[0] for r in rows],
            "url": [f"https://x/{r[0]}" for r in rows],
            "caption": ["c"] * len(rows),
            "similarity": pa.array([r[2] for r in rows], pa.float32()),
            "names": [r[1] for r in rows],
            "surface_forms": [[n.title() for n in r[1]] for r in rows],
            "n_names": pa.array([len(r[1]) for r in rows], pa.int32()),
            "language": pa.nulls(len(rows), pa.string()),
        },
        schema=schema.NAMES_FOUND,
    )


TABLE = samples(
    [(f"a{i}", ["brad pitt"], 0.30 + i / 100) for i in range(6)]
    + [("a0", ["brad pitt"], 0.30)]  # the same sample again (duplicate URL across shards): counted once
    + [
        ("b1", ["brad pitt", "angelina jolie"], 0.5),
        ("b2", ["angelina jolie"], 0.2),
        ("c1", ["tom hanks"], 0.9),
    ]
)


def test_explode_and_count_distinct_samples() -> None:
    mentions = explode_mentions(TABLE)
    assert mentions.num_rows == 11
    assert count_names(mentions) == {"brad pitt": 7, "angelina jolie": 2, "tom hanks": 1}
    assert count_names(mentions, min_count=2) == {"brad pitt": 7, "angelina jolie": 2}


def test_aggregate_drops_rare_names_and_caps_by_similarity() -> None:
    names, kept = aggregate_names(explode_mentions(TABLE), min_candidates=2, max_rows_per_name=3)
    rows = {r["name_key"]: r for r in names.to_pylist()}
    assert set(rows) == {"brad pitt", "angelina jolie"}
    assert rows["brad pitt"]["n_candidates"] == 7 and rows["brad pitt"]["display_name"] == "Brad Pitt"
    by_name: dict[str, list[str]] = {}
    for key, sid in zip(
        kept.column("name_key").to_pylist(), kept.column("sample_id").to_pylist(), strict=True
    ):
        by_name.setdefault(key, []).append(sid)
    assert by_name["brad pitt"] == ["b1", "a5", "a4"]  # highest similarity first, capped at 3
    assert sorted(by_name["angelina jolie"]) == ["b1", "b2"]


def test_select_kept_filters_names_and_honours_opt_out() -> None:
    _, kept = aggregate_names(explode_mentions(TABLE), min_candidates=2, max_rows_per_name=3)
    out, drops = select_kept(TABLE, kept, opt_out=frozenset({"angelina jolie"}))
    result = {r["sample_id"]: r["names"] for r in out.to_pylist()}
    assert result == {"a4": ["brad pitt"], "a5": ["brad pitt"], "b1": ["brad pitt"]}
    assert out.column("n_names").to_pylist() == [1, 1, 1]
    assert drops["opted_out_name"] == 2 and drops["no_kept_name"] == TABLE.num_rows - 3

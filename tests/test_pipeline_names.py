"""The three name-mining stages end to end (local executor: the same task classes Ray runs)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laioncele.io.shards import load_manifest, read_shards
from pipelines.cli import main as cli_main

CAPTIONS = (
    [f"Brad Pitt at the {place} premiere" for place in ("Paris", "Berlin", "Venice", "London", "Tokyo")]
    + ["brad pitt on the red carpet", "new photos of brad pitt and his car", "BRAD PITT SIGNED POSTER"]
    + ["Fight Club DVD cover with brad pitt"]  # a mixed-case caption: NER misses the lower-case name
    # No list knows "Kanye": NER's tags are held back per caption, but three make him a known name.
    + [f"Kanye West and Kim Kardashian at the {event}" for event in ("Met Gala", "Grammys", "BET Awards")]
    + [
        "Kanye West performs in Paris",
        "kanye west sneakers",
    ]  # pre-filtered: only the second pass reads these
    + [f"Angelina Jolie arrives in {city}" for city in ("Cannes", "Rome", "Madrid", "Oslo", "Vienna")]
    + ["Angelina Jolie and Brad Pitt in Cannes"]
    + [f"Kate Middleton Wedding Reception Dress {i}" for i in range(5)]
    + ["Tom Hanks waves", "Handpainted Gold Tree Oil Painting", "Black Panther Necklace", ""]
    + ["Buddy Holly Hoody"]  # NER and the product rules miss him; the famous-names list does not
)


def test_names_stages_find_lower_case_mentions_and_aggregate(tmp_path: Path) -> None:
    parquet = tmp_path / "laion.parquet"
    pq.write_table(
        pa.table(
            {
                "URL": [f"https://img/{i}.jpg" for i in range(len(CAPTIONS))],
                "TEXT": CAPTIONS,
                "similarity": [0.3 + i / 1000 for i in range(len(CAPTIONS))],
            }
        ),
        parquet,
    )
    out = tmp_path / "out"
    sets = [
        f"input.paths=[{parquet}]",
        f"run.output_root={out}",
        "ray.executor=local",
        "ray.progress_bars=false",
        "names.min_candidates=5",
        "names.second_pass_min_count=3",
        "names.gated_min_count=3",
        "names.max_rows_per_name=6",
        "names.opt_out_names=[Kate Middleton]",
    ]
    assert cli_main(["run", "all", *sum((["--set", s] for s in sets), [])]) == 0

    ner = {r["sample_id"]: r["names"] for r in read_shards(out / "ner").to_pylist()}

    found = read_shards(out / "names").to_pylist()
    by_caption = {r["caption"]: r["names"] for r in found}
    # NER misses lower/upper-case mentions; the corpus-wide second pass finds them.
    assert by_caption["brad pitt on the red carpet"] == ["brad pitt"]
    assert by_caption["BRAD PITT SIGNED POSTER"] == ["brad pitt"]
    assert sorted(by_caption["Angelina Jolie and Brad Pitt in Cannes"]) == ["angelina jolie", "brad pitt"]
    # Whatever NER missed in any-case mentions, the second pass added: names = NER names + matcher names.
    added = sum(len(set(r["names"]) - set(ner.get(r["sample_id"], []))) for r in found)
    assert all(set(ner[r["sample_id"]]) <= set(r["names"]) for r in found if r["sample_id"] in ner)
    assert load_manifest(out / "names")["stats"].get("second_pass_added", 0) == added

    names_table = {r["name_key"]: r for r in read_shards(out / "candidates" / "names_table").to_pylist()}
    assert set(names_table) == {"brad pitt", "angelina jolie", "kate middleton", "kanye west"}
    # NER tagged him (held back) in the 3 captions with Kim; the second pass added the 2 pre-filtered ones.
    assert by_caption["Kanye West performs in Paris"] == ["kanye west"]
    assert names_table["kanye west"]["n_candidates"] == 5 and names_table["kanye west"]["n_second_pass"] == 2
    ner_rows = read_shards(out / "ner").to_pylist()
    assert sum(r["gated_names"] == ["kanye west"] for r in ner_rows) == 3
    assert all("kanye west" not in r["names"] for r in ner_rows)  # held back per caption, never a NER name
    assert load_manifest(out / "names")["stats"]["second_pass_gated"] == 3
    assert by_caption["Buddy Holly Hoody"] == ["buddy holly"]
    assert load_manifest(out / "ner")["stats"]["names_added"]["famous_list"] >= 1
    assert names_table["brad pitt"]["n_candidates"] == 10
    # All-lower and all-caps captions are re-cased for NER; the mixed-case one only the second pass reads.
    assert by_caption["Fight Club DVD cover with brad pitt"] == ["brad pitt"]
    assert names_table["brad pitt"]["n_second_pass"] == 1
    assert names_table["brad pitt"]["ner_share"] == pytest.approx(9 / 10)
    assert load_manifest(out / "candidates")["names_second_pass_unconfirmed"] == 0
    assert names_table["brad pitt"]["display_name"] == "Brad Pitt"

    candidates = read_shards(out / "candidates").to_pylist()
    pitt_rows = [r for r in candidates if "brad pitt" in r["names"]]
    assert len(pitt_rows) == 6  # capped at max_rows_per_name, the highest similarity kept
    assert all("kate middleton" not in r["names"] for r in candidates)  # opted out before download
    both = [r for r in candidates if r["n_names"] == 2]
    assert [sorted(r["names"]) for r in both] == [["angelina jolie", "brad pitt"]]
    manifest = load_manifest(out / "candidates")
    assert manifest["stats"]["opted_out_name"] == 5  # names removed; a row left with none is no_kept_name
    assert manifest["rows"] + manifest["drops"]["no_kept_name"] == manifest["rows_in"]

"""Corpus evidence: a frequent, consistently capitalised pair in person contexts becomes a known name,
whether or not a list knows its given name."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from names_fixture import names_table_of

from laioncele.names.evidence import frequent_pairs, initialled_aliases, pair_occurrences
from laioncele.names.lexicon import given_names

# "Kazuvi" is in no given-name list: the pre-filter never sends these captions to NER.
PERSON = [
    "Kazuvi Renbeley attends the Met Gala",
    "Kazuvi Renbeley arrives at the Cannes Film Festival",
    "Actress Kazuvi Renbeley poses in Paris",
    "Portrait of Kazuvi Renbeley",
    "kazuvi renbeley red carpet",  # lower case: says nothing about capitals
    "KAZUVI RENBELEY SIGNED POSTER",
]
CAPTIONS = (
    PERSON
    + ["Zorvina Quellab Women's Leather Handbag"] * 8  # a brand: never in a person context
    + ["Sunset over the lake, photo by Dorvik Maltese"] * 6  # credited, not pictured
    + ["Lavuna okandi attends the gala"] * 6  # not capitalised where the caption has capitals
    + ["Tenzo Barrowick attends the gala"] * 4  # too rare
    + ["Image of Women's Niner For Life Baseball Jacket"] * 6  # possessive first word, everyday words
    + [f"K. Renbeley attends the {e}" for e in ("Met Gala", "BAFTA Awards", "Oscars", "Grammys", "Emmys")]
)


def _table(captions: list[str]) -> pa.Table:
    return pa.table({"sample_id": [f"s{i}" for i in range(len(captions))], "caption": captions})


def test_pair_occurrences_mark_capitals_and_person_contexts() -> None:
    assert "kazuvi" not in given_names()
    occ = {(r["sample_id"], r["name_key"]): r for r in pair_occurrences(_table(CAPTIONS)).to_pylist()}
    assert occ[("s0", "kazuvi renbeley")] | {} == {
        "name_key": "kazuvi renbeley", "sample_id": "s0", "display": "Kazuvi Renbeley",
        "cased": True, "capitalised": True, "person_context": True, "quoted": False,
    }  # fmt: skip
    assert occ[("s4", "kazuvi renbeley")]["cased"] is False
    assert occ[("s5", "kazuvi renbeley")]["person_context"]  # "... SIGNED"
    assert not occ[("s6", "zorvina quellab")]["person_context"]
    assert not occ[("s14", "dorvik maltese")]["person_context"]  # after "by"
    assert not any(k[1].startswith("women") or k[1].endswith(" life") for k in occ)


def test_frequent_pairs_keep_only_the_person() -> None:
    found = frequent_pairs(pair_occurrences(_table(CAPTIONS)), 5, 0.2, 0.8).to_pylist()
    assert found == [{"name_key": "kazuvi renbeley", "display": "Kazuvi Renbeley", "n_samples": 6}]
    # a lower bar on samples admits the rare one; a lower bar on capitals, the lower-cased one
    assert {r["name_key"] for r in frequent_pairs(pair_occurrences(_table(CAPTIONS)), 4, 0.2, 0.8).to_pylist()} == {
        "kazuvi renbeley", "tenzo barrowick"
    }  # fmt: skip
    assert "lavuna okandi" in {
        r["name_key"] for r in frequent_pairs(pair_occurrences(_table(CAPTIONS)), 5, 0.2, 0.0).to_pylist()
    }


def test_initialled_aliases_point_to_the_one_full_name() -> None:
    known = ["anna muller", "a muller", "john smith", "jane smith", "j smith", "r kelly", "e hinton"]
    assert initialled_aliases(known) == {"a muller": "anna muller"}  # "j smith" is ambiguous; no full Kelly


def test_second_pass_admits_the_unlisted_person_by_corpus_evidence(tmp_path: Path) -> None:
    tables = {
        on: names_table_of(CAPTIONS, tmp_path / f"out{on}", f"names.corpus_pair_min_samples={on}")
        for on in (0, 5)
    }
    assert "kazuvi renbeley" not in tables[0]  # the given-name gate alone decides
    assert (
        tables[0]["k renbeley"]["n_candidates"] == 5
    )  # NER reads the initialled mentions: a name of its own
    found = tables[5]["kazuvi renbeley"]
    # every mention, lower and upper case too, kept as confirmed, and the initialled ones joined to it
    assert found["n_candidates"] == 6 + 5
    assert set(tables[5]) == set(tables[0]) - {"k renbeley"} | {"kazuvi renbeley"}

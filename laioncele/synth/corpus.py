"""A known-truth LAION-scale corpus for judging name mining at identity level (issue 25).

Background rows are real LAION captions, recombined and perturbed so rows are not literal repeats; the real
names they already contain cannot be told apart from phrases without labels, so every 2-3 word sequence of
the source captions is recorded (``background_name_keys``) and the scorer leaves such names out of purity.
About rows/50 invented people (Faker, many locales, romanised non-Latin names and invented syllabic names) are
mentioned a Zipf-distributed number of times, in the forms LAION writes names in; photographers are credited
("photo by X", X not depicted) and name-shaped distractors (brands, products, places, plant cultivars) repeat
hundreds of times. Rows are built shard by shard from arrays drawn up front, so 1M rows stream in bounded
memory. ``laioncele.synth.identity_truth.score_identities`` scores a run against the truth written here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from laioncele.names.lexicon import fold, fold_text, given_names

REPO = Path(__file__).resolve().parents[2]
SHARED_SAMPLE = REPO.parent / "shared" / "fixtures" / "laion" / "laion_sample_9600.parquet"
PROJECT_SAMPLE = REPO / "sample" / "metadata.parquet"
URL_PREFIX = "https://img.example.org/synth"
TRUTH_FILE = "truth.json"

# Faker locales and their share of invented people; "syllabic" is names made of syllables no list knows.
LOCALES = {
    "en_US": 0.14,
    "en_GB": 0.06,
    "de_DE": 0.07,
    "fr_FR": 0.07,
    "es_ES": 0.06,
    "it_IT": 0.06,
    "pt_BR": 0.06,
    "en_IN": 0.07,
    "yo_NG": 0.06,
    "ig_NG": 0.05,
    "zu_ZA": 0.05,
    "sw": 0.05,
    "id_ID": 0.05,
    "ja_JP": 0.05,
    "syllabic": 0.10,
}
# How a person's mention is written, and how often (pairs, "A and B", are drawn separately: PAIR_SHARE).
FORMS = {
    "title": 0.44,
    "lower": 0.12,
    "upper": 0.06,
    "possessive": 0.02,
    "middle_initial": 0.05,
    "inverted": 0.05,
    "initial": 0.04,
    "hashtag": 0.04,
    "product": 0.18,
}
PAIR_SHARE = 0.08  # of mention slots, written as "A and B" with another person
# Share of a person's mentions written in a person context by the corpus-evidence rule's definition (a person
# word next to the name: "X attends", "Actress X", "X's"; names_evidence.pair_occurrences), counted over the
# mentions that rule pairs. Measured on blind-labelled real LAION captions (bench/evidence_on_real.py,
# names_identity.evidence_on_real): 5.5% (6.9% leaving out "by X" credits); the possessive ("X's") alone is
# 2% of them, hence its FORMS share. The other forms that can carry a context (title, lower, upper, product,
# middle initial, initialled, inverted, "A and B") take the rest of this share (``context_rate``).
PERSON_CONTEXT_SHARE = 0.06
# Forms whose mentions the rule pairs as the bare "First Last" (what evidence_on_real counts); possessive is
# always in a person context, hashtags never.
_PAIRED_FORMS = ("title", "lower", "upper", "possessive", "product")
CREDIT_ON_PERSON_ROW = 0.04  # of person rows that also credit a photographer
ZIPF_A = 2.0

_EVENTS = [
    "Met Gala",
    "Cannes Film Festival",
    "BAFTA Awards",
    "Golden Globe Awards",
    "Paris Fashion Week",
    "charity gala",
    "Toronto International Film Festival",
    "Grammy Awards",
    "world premiere",
    "Venice Film Festival",
]
_CITIES = [
    "London",
    "Paris",
    "Los Angeles",
    "New York",
    "Berlin",
    "Milan",
    "Tokyo",
    "Lagos",
    "Mumbai",
    "Sydney",
]
# Each form's templates in a person context (the rule's person words next to the name) and plain ones.
_TITLE_CONTEXT = [
    "{n} attends the {e}",
    "{n} arrives at the {e} in {c}",
    "{n} performs on stage in {c}",
    "Portrait of {n}",
    "{n} during the {e}",
    "Actress {n} poses at the {e}",
    "{n} speaks at a press conference in {c}",
    "{n} photographed in {c}, {y}",
]
_TITLE_PLAIN = [
    "{n} at the {c} premiere",
    "{n} on the red carpet at the {e}",
    "{n} at the {e} in {c}",
    "{n} in {c}, {y}",
    "{n} - {e} {y}",
    "{e} {y}: {n}",
    "{n} at the {e}",
    "{n} and guests in {c}",
    "{c}, {y} - {n} on stage",
    "{n} | {e}",
]
_LOWER_CONTEXT = ["{n} hairstyle {y}", "{n} haircut", "{n} signed photo"]
_LOWER_PLAIN = ["{n} red carpet", "{n} hot photos", "{n} at the {e}", "{n} net worth {y}", "{n} in {c}"]
_POSSESSIVE_TEMPLATES = [
    "{n}'s wedding dress",
    "{n}'s new haircut",
    "{n}'s house in {c}",
    "{n}'s look at the {e}",
]
_INVERTED_CONTEXT = ["Portrait of {n}"]
_INVERTED_PLAIN = ["{n} - Portrait", "{n} ({y}) - photograph", "Portrait: {n}"]
_PRODUCT_CONTEXT = ["{n} Signed Poster 8x10", "{n} Autographed Photo", "{n} Signed Photo with COA"]
_PRODUCT_PLAIN = ["{n} T-Shirt Men's", "{n} Poster Print A4", "{n} Photo Mug", "{n} Canvas Print {y}"]
_HASHTAG_TEMPLATES = ["{cap} #{n} #redcarpet", "#{n} #fashion #style", "{cap} #{n}"]
_PAIR_CONTEXT = ["Actress {a} and {b} attend the {e}"]
_PAIR_PLAIN = ["{a} and {b} at the {e}", "{a} and {b} in {c}", "{a} & {b} at the {e}"]
_CREDIT_TEMPLATES = ["{cap}, photo by {n}", "{cap} - Photo by {n}", "{cap} (photo by {n})"]
_DISTRACTOR_KINDS = ("brand", "product", "place", "cultivar")
_PRODUCT_NOUNS = ["Sofa", "Armchair", "Dining Table", "Pendant Light", "Wrap Dress", "Bed Frame", "Desk Lamp"]
_BRAND_CONTEXTS = [
    "{d} Women's Leather Handbag",
    "{d} Eau de Parfum 100ml",
    "{d} Collection Sunglasses",
    "New {d} Wristwatch Silver",
]
_PRODUCT_CONTEXTS = ["{d} in Grey Velvet", "{d} - Modern Living Room", "Buy {d} Online", "{d}, Oak, 2 Seater"]
_PLACE_CONTEXTS = ["Sunset over {d}", "Aerial view of {d}", "Hotels near {d}", "{d} Beach at Dawn"]
_CULTIVAR_CONTEXTS = ["{d} in full bloom", "{d} - 2L pot", "Buy {d} plants", "{d} close-up, garden"]
_GENERA = ["Rose", "Clematis", "Dahlia", "Hosta", "Peony", "Hydrangea", "Camellia"]
_SYLLABLES = tuple(
    [
        "ka",
        "ren",
        "be",
        "ley",
        "mo",
        "ri",
        "ta",
        "shu",
        "no",
        "vi",
        "da",
        "lu",
        "ze",
        "ko",
        "ba",
        "ni",
        "ra",
        "so",
        "fe",
        "tu",
        "gi",
        "wa",
    ]
)
_WORDS = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


@dataclass
class Person:
    """One invented person (an identity) or photographer."""

    first: str
    last: str
    middle: str
    locale: str
    key: str = ""
    listed: bool = False
    rows: list[int] = field(default_factory=list)
    forms: list[str] = field(default_factory=list)

    @property
    def display(self) -> str:
        return f"{self.first} {self.last}"


def background_captions() -> list[str]:
    """Real LAION captions: the shared 9,600 when present, else the project's own sample (the same plus the
    sample's people); empty ones and exact repeats left out."""
    path = SHARED_SAMPLE if SHARED_SAMPLE.is_file() else PROJECT_SAMPLE
    texts = pq.read_table(path, columns=["TEXT"]).column("TEXT").to_pylist()
    return sorted({t.strip() for t in texts if isinstance(t, str) and t.strip()})


def word_ngrams(text: str, sizes: tuple[int, ...] = (2, 3)) -> set[str]:
    """Folded word sequences of ``text`` (the keys a name found in it could have)."""
    words = [fold(w).replace("’", "'").removesuffix("'s") for w in _WORDS.findall(text)]
    return {" ".join(words[i : i + n]) for n in sizes for i in range(len(words) - n + 1)}


def person_key(display: str) -> str:
    """The canonical key of a name as the names stages write it: folded, dots dropped, single spaces."""
    return " ".join(fold_text(display).replace(".", " ").replace("’", "'").split())


def _syllabic(rng: np.random.Generator, parts: int) -> str:
    return "".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), parts)).capitalize()


def _faker_name(fakers: dict[str, Any], locale: str, rng: np.random.Generator) -> tuple[str, str]:
    if locale == "syllabic":
        return _syllabic(rng, int(rng.integers(2, 4))), _syllabic(rng, int(rng.integers(2, 4)))
    fake = fakers[locale]
    if locale == "ja_JP":
        return fake.first_romanized_name(), fake.last_romanized_name()
    return fake.first_name(), fake.last_name()


def invent_people(n: int, seed: int, rng: np.random.Generator, taken: set[str]) -> list[Person]:
    """``n`` people with distinct keys none of ``taken`` holds (keys of the background and of earlier people).
    A locale whose lists run dry gets a syllabic surname, so the count always comes out."""
    from faker import Faker  # noqa: PLC0415  (a dev dependency: only the generator needs it)

    fakers: dict[str, Any] = {}
    for k, locale in enumerate(LOCALES):
        if locale != "syllabic":
            fakers[locale] = Faker(locale)
            fakers[locale].seed_instance(seed * 1000 + k)
    names, shares = list(LOCALES), np.array(list(LOCALES.values()))
    locales = rng.choice(names, size=n, p=shares / shares.sum())
    known = given_names()
    people = []
    for locale in locales:
        for attempt in range(30):
            first, last = _faker_name(fakers, str(locale), rng)
            if attempt >= 10:
                last = _syllabic(rng, 3)
            first, last = first.split()[0], last.replace(" ", "-")
            key = person_key(f"{first} {last}")
            if key not in taken and len(key.split()) == 2 and first.isalpha():
                break
        taken.add(key)
        middle = "ABCDEFGHJKLMNPRSTW"[int(rng.integers(0, 18))]
        people.append(Person(first, last, middle, str(locale), key, fold(first) in known))
    return people


def mention_counts(n: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Zipf-distributed mentions per person, most 1-4, the head capped at rows/250 (thousands at 1M rows);
    the most-mentioned person always reaches the cap, as LAION's most photographed people do."""
    cap = max(5, rows // 250)
    counts = np.minimum(rng.zipf(ZIPF_A, n), cap)
    counts[int(np.argmax(counts))] = cap
    return counts.astype(np.int64)


def _distractors(n: int, seed: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Name-shaped phrases that are no person, each with its kind and text."""
    from faker import Faker  # noqa: PLC0415

    fake = Faker("en_US")
    fake.seed_instance(seed + 77)
    out, seen = [], set()
    while len(out) < n:
        kind = _DISTRACTOR_KINDS[len(out) % len(_DISTRACTOR_KINDS)]
        if kind == "brand":
            text = f"{fake.first_name()} {fake.last_name()}"
        elif kind == "product":
            text = f"{fake.first_name()} {_PRODUCT_NOUNS[int(rng.integers(0, len(_PRODUCT_NOUNS)))]}"
        elif kind == "place":
            text = fake.city()
            if len(text.split()) != 2:
                continue
        else:
            genus = _GENERA[int(rng.integers(0, len(_GENERA)))]
            text = f"{genus} '{fake.first_name()} {fake.last_name()}'"
        if text not in seen:
            seen.add(text)
            out.append({"text": text, "kind": kind, "rows": []})
    return out


def context_rate(person_context_share: float) -> float:
    """The chance that a mention in a form other than the possessive (always in a person context) or the
    hashtag (never) is written in a person context, so that ``person_context_share`` of the mentions the rule
    pairs as "First Last" (``_PAIRED_FORMS`` and "A and B") are: (share * paired - possessive) / (paired -
    possessive), clipped to [0, 1]."""
    if not 0 <= person_context_share <= 1:
        raise ValueError(f"person_context_share must lie in [0, 1], got {person_context_share}")
    total = sum(FORMS.values())
    paired = (1 - PAIR_SHARE) * sum(FORMS[f] for f in _PAIRED_FORMS) / total + PAIR_SHARE
    possessive = (1 - PAIR_SHARE) * FORMS["possessive"] / total
    return min(1.0, max(0.0, (person_context_share * paired - possessive) / (paired - possessive)))


class _Plan:
    """What every row holds, drawn up front as arrays (kind, people, forms), so shards are written one by one."""

    # row kinds
    BACKGROUND, PERSON, PAIR, DISTRACTOR, CREDIT = range(5)

    def __init__(self, rows: int, seed: int, person_context_share: float = PERSON_CONTEXT_SHARE) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.pool = background_captions()
        pool_keys: set[str] = set()
        for caption in self.pool:
            pool_keys |= word_ngrams(caption)
        self.background_keys = pool_keys
        taken = set(pool_keys)
        self.people = invent_people(max(1, rows // 50), seed, rng, taken)
        self.photographers = invent_people(max(1, rows // 1000), seed + 1, rng, taken)
        self.distractors = _distractors(max(4, rows // 5000), seed, rng)
        counts = mention_counts(len(self.people), rows, rng)
        slots = rng.permutation(np.repeat(np.arange(len(self.people)), counts))
        # pairs: consecutive slots, two different people, PAIR_SHARE of slots
        paired = rng.random(len(slots) // 2) < PAIR_SHARE
        first, second = slots[0 : 2 * len(paired) : 2], slots[1 : 2 * len(paired) : 2]
        paired &= first != second
        pair_rows = np.stack([first[paired], second[paired]], axis=1)
        used = np.zeros(len(slots), bool)
        used[0 : 2 * len(paired) : 2][paired] = True
        used[1 : 2 * len(paired) : 2][paired] = True
        single = slots[~used]
        n_distractor_rows = int(rng.integers(100, 600, len(self.distractors)).sum())
        credit_counts = np.exp(rng.uniform(np.log(5), np.log(300), len(self.photographers))).astype(int)
        total = len(single) + len(pair_rows) + n_distractor_rows + int(credit_counts.sum())
        if total > rows:
            raise ValueError(f"{rows} rows cannot hold {total} planned mention rows; ask for more rows")
        order = rng.permutation(rows)  # row index of each planned row, the rest background
        self.kind = np.full(rows, self.BACKGROUND, np.int8)
        self.a = np.full(rows, -1, np.int64)  # person, distractor or photographer index
        self.b = np.full(rows, -1, np.int64)  # second person of a pair
        self.credit = np.full(rows, -1, np.int64)  # photographer credited on a person row
        at = 0
        for kind, count in (
            (self.PERSON, len(single)),
            (self.PAIR, len(pair_rows)),
            (self.DISTRACTOR, n_distractor_rows),
            (self.CREDIT, int(credit_counts.sum())),
        ):
            idx = order[at : at + count]
            self.kind[idx] = kind
            at += count
            if kind == self.PERSON:
                self.a[idx] = single
            elif kind == self.PAIR:
                self.a[idx], self.b[idx] = pair_rows[:, 0], pair_rows[:, 1]
            elif kind == self.DISTRACTOR:
                self.a[idx] = rng.permutation(
                    np.repeat(
                        np.arange(len(self.distractors)), rng.multinomial(count, self._even(self.distractors))
                    )
                )
            else:
                self.a[idx] = rng.permutation(np.repeat(np.arange(len(self.photographers)), credit_counts))
        person_rows = np.flatnonzero(self.kind == self.PERSON)
        credited = person_rows[rng.random(len(person_rows)) < CREDIT_ON_PERSON_ROW]
        self.credit[credited] = rng.integers(0, len(self.photographers), len(credited))
        form_names, shares = list(FORMS), np.array(list(FORMS.values()))
        self.form = rng.choice(len(form_names), size=rows, p=shares / shares.sum())
        self.form_names = form_names
        self.case = rng.integers(0, 10, size=(rows, 2))  # pair sides: 0-6 title, 7-8 lower, 9 upper
        self.bg = rng.integers(0, len(self.pool), size=(rows, 2))
        self.mod = rng.random((rows, 4))
        self.template = rng.integers(0, 1 << 30, rows)
        self.year = rng.integers(1995, 2024, rows)
        self.context = rng.random(rows) < context_rate(person_context_share)  # this row's mention in one

    @staticmethod
    def _even(items: list[Any]) -> np.ndarray:
        return np.full(len(items), 1 / len(items))

    def background(self, i: int) -> str:
        """A real caption, recombined with another's first words and perturbed."""
        cap = self.pool[self.bg[i, 0]]
        r = self.mod[i]
        if r[0] < 0.3:
            cap = f"{cap} - {' '.join(self.pool[self.bg[i, 1]].split()[:4])}"
        if r[1] < 0.2:
            cap = f"{cap} {('#' + str(int(self.template[i]) % 997), f'({self.year[i]})', '8x10', 'HD')[int(r[2] * 4)]}"
        if r[3] < 0.05:
            cap = cap.lower()
        elif r[3] > 0.97:
            cap = cap.upper()
        return cap

    def _pick(self, templates: list[str], i: int, **values: str) -> str:
        t = templates[int(self.template[i]) % len(templates)]
        k = int(self.template[i]) >> 8
        return t.format(
            e=_EVENTS[k % len(_EVENTS)], c=_CITIES[(k >> 4) % len(_CITIES)], y=self.year[i], **values
        )

    def _cased(self, name: str, case: int) -> tuple[str, str]:
        return (
            (name.lower(), "lower")
            if case in (7, 8)
            else (name.upper(), "upper")
            if case == 9
            else (name, "title")
        )

    def person_text(self, i: int) -> tuple[str, str]:
        """Row ``i``'s caption and the form its one mention takes."""
        p = self.people[self.a[i]]
        form = self.form_names[self.form[i]]
        short_bg = " ".join(self.background(i).split()[:6])
        ctx = bool(self.context[i])
        title = _TITLE_CONTEXT if ctx else _TITLE_PLAIN
        if form == "title":
            text = self._pick(title, i, n=p.display)
        elif form == "lower":
            text = self._pick(_LOWER_CONTEXT if ctx else _LOWER_PLAIN, i, n=p.display).lower()
        elif form == "upper":
            text = self._pick(title, i, n=p.display).upper()
        elif form == "possessive":
            text = self._pick(_POSSESSIVE_TEMPLATES, i, n=p.display)
        elif form == "middle_initial":
            text = self._pick(title, i, n=f"{p.first} {p.middle}. {p.last}")
        elif form == "inverted":
            text = self._pick(_INVERTED_CONTEXT if ctx else _INVERTED_PLAIN, i, n=f"{p.last}, {p.first}")
        elif form == "initial":
            text = self._pick(title, i, n=f"{p.first[0]}. {p.last}")
        elif form == "hashtag":
            tag = f"{p.first}{p.last}".replace("-", "")
            text = self._pick(
                _HASHTAG_TEMPLATES, i, n=tag.lower() if self.case[i, 0] < 5 else tag, cap=short_bg
            )
        else:
            text = self._pick(_PRODUCT_CONTEXT if ctx else _PRODUCT_PLAIN, i, n=p.display)
        if self.credit[i] >= 0:
            text = self._pick(_CREDIT_TEMPLATES, i, cap=text, n=self.photographers[self.credit[i]].display)
        return text, form

    def row_text(self, i: int) -> tuple[str, list[tuple[Any, str]]]:
        """Caption of row ``i`` and who it mentions: (person or distractor record, form) pairs."""
        kind = self.kind[i]
        if kind == self.PERSON:
            text, form = self.person_text(i)
            mentions: list[tuple[Any, str]] = [(self.people[self.a[i]], form)]
            if self.credit[i] >= 0:
                mentions.append((self.photographers[self.credit[i]], "credit"))
            return text, mentions
        if kind == self.PAIR:
            a, b = self.people[self.a[i]], self.people[self.b[i]]
            na, _ = self._cased(a.display, int(self.case[i, 0]))
            nb, _ = self._cased(b.display, int(self.case[i, 1]))
            templates = _PAIR_CONTEXT if self.context[i] else _PAIR_PLAIN
            return self._pick(templates, i, a=na, b=nb), [(a, "pair"), (b, "pair")]
        if kind == self.DISTRACTOR:
            d = self.distractors[self.a[i]]
            contexts = {
                "brand": _BRAND_CONTEXTS,
                "product": _PRODUCT_CONTEXTS,
                "place": _PLACE_CONTEXTS,
                "cultivar": _CULTIVAR_CONTEXTS,
            }[d["kind"]]
            return self._pick(contexts, i, d=d["text"]), [(d, d["kind"])]
        if kind == self.CREDIT:
            p = self.photographers[self.a[i]]
            return self._pick(_CREDIT_TEMPLATES, i, cap=self.background(i), n=p.display), [(p, "credit")]
        return self.background(i), []


def _shard_table(plan: _Plan, lo: int, hi: int, seed: int) -> pa.Table:
    texts = []
    for i in range(lo, hi):
        text, mentions = plan.row_text(i)
        texts.append(text)
        for who, form in mentions:
            if isinstance(who, Person):
                who.rows.append(i)
                who.forms.append(form)
            else:
                who["rows"].append(i)
    n = hi - lo
    rng = np.random.default_rng([seed, lo])
    return pa.table(
        {
            "URL": pa.array([f"{URL_PREFIX}/{seed}/{i:09d}.jpg" for i in range(lo, hi)], pa.string()),
            "TEXT": pa.array(texts, pa.string()),
            "WIDTH": pa.array(rng.integers(200, 2048, n).astype(float)),
            "HEIGHT": pa.array(rng.integers(200, 2048, n).astype(float)),
            "similarity": pa.array(rng.uniform(0.27, 0.42, n)),
            "punsafe": pa.array(rng.uniform(0, 0.2, n).astype(np.float32)),
            "pwatermark": pa.array(rng.uniform(0, 1, n).astype(np.float32)),
            "LANGUAGE": pa.array(np.where(rng.random(n) < 0.9, "en", "de").tolist(), pa.string()),
        }
    )


def row_of_url(url: str) -> int:
    """The row a generated URL belongs to (the scorer's join from samples back to the truth)."""
    return int(url.rsplit("/", 1)[1].split(".")[0])


def iter_shards(plan: _Plan, rows: int, seed: int, rows_per_shard: int) -> Iterator[pa.Table]:
    """The corpus shard by shard; each shard's rows are recorded in ``plan``'s people as it is built."""
    for lo in range(0, rows, rows_per_shard):
        yield _shard_table(plan, lo, min(rows, lo + rows_per_shard), seed)


def _person_truth(p: Person) -> dict[str, Any]:
    return {
        "name": p.display,
        "key": p.key,
        "first": p.first,
        "last": p.last,
        "middle_initial": p.middle,
        "locale": p.locale,
        "given_name_listed": p.listed,
        "rows": p.rows,
        "forms": p.forms,
    }


def write_corpus(
    out: str | Path,
    rows: int,
    seed: int = 0,
    rows_per_shard: int = 100_000,
    person_context_share: float = PERSON_CONTEXT_SHARE,
) -> dict[str, Any]:
    """Write ``rows`` LAION-shaped rows as parquet shards under ``out`` and ``out/truth.json``; returns the
    truth (see the module docstring). ``person_context_share``: of the mentions the corpus-evidence rule
    pairs, the share written in a person context (``PERSON_CONTEXT_SHARE``, real LAION's)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = _Plan(rows, seed, person_context_share)
    for k, table in enumerate(iter_shards(plan, rows, seed, rows_per_shard)):
        pq.write_table(table, out / f"part-{k:05d}.parquet", row_group_size=20_000)
    truth = {
        "rows": rows,
        "seed": seed,
        "person_context_share": person_context_share,
        "url_prefix": f"{URL_PREFIX}/{seed}/",
        "background_rule": "a name whose key is a 2-3 word sequence of a real source caption (folded) and no "
        "invented person's key is a background name: real, or a phrase, truth unknown",
        "identities": [_person_truth(p) for p in plan.people],
        "photographers": [_person_truth(p) for p in plan.photographers],
        "distractors": plan.distractors,
        "background_name_keys": sorted(plan.background_keys),
    }
    (out / TRUTH_FILE).write_text(json.dumps(truth), encoding="utf-8")
    return truth


def mention_context_share(texts: list[str], people: list[dict[str, Any]]) -> dict[str, Any]:
    """How often the generated people's mentions are in a person context by the corpus-evidence rule
    (``names_evidence.pair_occurrences``, default forms: the bare "First Last" pair, as
    ``bench/evidence_on_real.py`` counts real labelled names): ``texts`` the corpus captions by row, ``people``
    the truth's identities. Returns the mentions, those the rule pairs, and the share of those in a context."""
    from laioncele.names.evidence import pair_occurrences  # noqa: PLC0415

    rows, keys = [], []
    for p in people:
        pairs = {
            o["name_key"]
            for o in pair_occurrences(pa.table({"sample_id": ["0"], "caption": [p["name"]]})).to_pylist()
        }
        rows += p["rows"]
        keys += [pairs] * len(p["rows"])
    occ = pair_occurrences(
        pa.table({"sample_id": [str(i) for i in range(len(rows))], "caption": [texts[r] for r in rows]})
    )
    in_context: dict[int, bool] = {}
    for sid, key, context in zip(
        *(occ.column(c).to_pylist() for c in ("sample_id", "name_key", "person_context")), strict=True
    ):
        i = int(sid)
        if key in keys[i]:
            in_context[i] = in_context.get(i, False) or context
    n = len(in_context)
    return {
        "mentions": len(rows),
        "mentions_the_rule_can_pair": n,
        "in_person_context": sum(in_context.values()),
        "in_person_context_share": round(sum(in_context.values()) / n, 4) if n else None,
    }

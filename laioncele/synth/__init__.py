"""Known-truth data for tests, the embedded sample and benchmarks; nothing here runs in a production build.

Modules: ``laion`` (LAION-shaped metadata parquet: ``write_laion_parquet``; ``python -m laioncele.synth.laion``),
``corpus`` (the known-truth names corpus: ``write_corpus``), ``identity_truth`` (its scorer:
``score_identities``), ``faces_truth`` (purity after faces: ``purity_after_faces``), ``embeddings`` (synthetic
face-embedding corpora for identity cleaning), ``sample`` (the embedded sample: ``build_sample``).
"""

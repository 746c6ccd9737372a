"""Name targets (stage targets): SDXL's two text encoders turn each kept name into its 8x2048 target.

Modules: ``encode`` (``load_text_encoders``, ``encode_names``, ``encode_target_batch``, ``targets_table``,
``mean_name_embedding``), ``tokenizers`` (SDXL's CLIP tokenizers built offline: ``build_sdxl_tokenizers``).
``laioncele.targets.X`` is ``laioncele.targets.encode.X``.
"""

from laioncele._moved import lazy_facade

__getattr__ = lazy_facade(__name__, "laioncele.targets.encode")

"""Encoder training: face crop -> SDXL name embedding (MagicNaming's image encoder), on the LaionCele dataset.

``python -m encoder_training train --config FILE`` trains (in-process or on Ray Train) and writes an export that
``encoder_training.export.load_exported`` loads for inference.
"""

import laioncele.offline_env  # noqa: F401  (first: offline env defaults before any dependency import)

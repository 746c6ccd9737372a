"""SDXL inference with predicted names: Name Prepending, recalibration and interpolation of name embeddings.

Importing this package loads torch but not diffusers; only ``named_prompt_embeds`` touches a pipeline.
"""

from __future__ import annotations

import laioncele.offline_env  # noqa: F401  (first: offline env defaults before any dependency import)
from inference.conditioning import named_prompt_embeds
from inference.interpolate import interpolate
from inference.prepend import prepend_name
from inference.recalibrate import recalibrate

__all__ = ["interpolate", "named_prompt_embeds", "prepend_name", "recalibrate"]

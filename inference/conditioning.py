"""SDXL pipeline inputs with a name prepended: what ``pipe(**kwargs)`` needs to draw a named identity."""

from __future__ import annotations

from typing import Any

import torch

from inference.prepend import prepend_name


def named_prompt_embeds(
    pipe: Any,
    prompt: str | list[str],
    name_embeds: Any,
    negative_prompt: str | list[str] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Encode ``prompt`` with the pipeline's own text encoders and prepend ``name_embeds`` to the positive side.

    Returns ``prompt_embeds``, ``pooled_prompt_embeds``, ``negative_prompt_embeds`` and
    ``negative_pooled_prompt_embeds`` for a ``StableDiffusionXLPipeline`` call. The negative embedding and both
    pooled embeddings are the pipeline's, untouched: the paper changes only the positive token sequence.
    """
    device = torch.device(device) if device is not None else pipe._execution_device
    with torch.no_grad():
        prompt_embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt=negative_prompt,
        )
    return {
        "prompt_embeds": prepend_name(prompt_embeds, name_embeds),
        "pooled_prompt_embeds": pooled,
        "negative_prompt_embeds": negative_embeds,
        "negative_pooled_prompt_embeds": negative_pooled,
    }

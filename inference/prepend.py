"""Name Prepending (MagicNaming eq. 1): put a name embedding right after BOS in SDXL's prompt embedding.

SDXL conditions on a fixed 77-token sequence, so inserting the 8 name tokens after BOS pushes the prompt's
tokens back by 8 and the last 8 positions (normally EOS/padding) fall off the end:

    out[:, 0] = prompt[:, 0]          (BOS)
    out[:, 1:9] = name                (the identity)
    out[:, 9:] = prompt[:, 1:69]      (the prompt, shifted)
"""

from __future__ import annotations

from typing import Any

import torch

from inference._tensors import as_tensor, like_input


def prepend_name(prompt_embeds: Any, name_embeds: Any) -> Any:
    """Insert ``name_embeds`` (B or 1, K, D) — or (K, D) — after BOS of ``prompt_embeds`` (B, L, D).

    Returns an array of ``prompt_embeds``'s shape, type, dtype and device; a name of batch 1 or without a batch
    dimension is shared by every prompt. Only the token sequence changes: pooled embeddings are left to the caller.
    """
    prompt = as_tensor(prompt_embeds)
    if prompt.ndim != 3:
        raise ValueError(f"prompt_embeds must be (batch, tokens, dim), got shape {tuple(prompt.shape)}")
    name = as_tensor(name_embeds, like=prompt)
    if name.ndim == 2:
        name = name.unsqueeze(0)
    if name.ndim != 3:
        raise ValueError(
            f"name_embeds must be (batch, name_tokens, dim) or (name_tokens, dim), got {tuple(name.shape)}"
        )
    batch, length, dim = prompt.shape
    name_batch, name_tokens, name_dim = name.shape
    if name_dim != dim:
        raise ValueError(f"name embedding width {name_dim} does not match the prompt embedding width {dim}")
    if name_batch not in (1, batch):
        raise ValueError(f"name batch {name_batch} must be 1 or the prompt batch {batch}")
    if not 1 <= name_tokens <= length - 1:
        raise ValueError(f"a {name_tokens}-token name does not fit after BOS in a {length}-token prompt")
    out = torch.cat(
        [prompt[:, :1], name.expand(batch, name_tokens, dim), prompt[:, 1 : length - name_tokens]],
        dim=1,
    )
    return like_input(out, prompt_embeds)

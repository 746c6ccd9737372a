"""Name-embedding recalibration (MagicNaming eqs. 4 and 5).

The paper's code is unreleased; this is our reading of the equations:

* eq. 4, strength:  F' = F_mean + delta * (F - F_mean), with F_mean the mean name embedding over the dataset
  (``laioncele.targets.mean_name_embedding``). delta > 1 exaggerates what makes the identity distinct, < 1 pulls it
  towards an "average person".
* eq. 5, norm:  F'' = name_scale * F' / ||F'||, with the norm over the whole (8, D) name embedding as eq. 5 is
  written (``per_token=True`` normalises each token row instead). The paper calls the scale eta; we call it
  ``name_scale`` because diffusers already uses ``eta`` for DDIM's noise parameter.
"""

from __future__ import annotations

from typing import Any

import torch

from inference._tensors import as_tensor, like_input

_EPS = 1e-12


def recalibrate(
    name_embeds: Any,
    mean: Any,
    delta: float = 1.0,
    name_scale: float | None = None,
    per_token: bool = False,
) -> Any:
    """Apply eq. 4 (``delta``) then, when ``name_scale`` is given, eq. 5 to (..., K, D) name embeddings.

    ``mean`` is (K, D) (or broadcastable to the input). With ``delta=1`` and ``name_scale=None`` the input comes
    back unchanged, bit for bit. Computes in float32 at least (an fp16 norm over 8 x 2048 values overflows) and
    returns the input's type and dtype.
    """
    if delta == 1.0 and name_scale is None:
        return name_embeds
    name = as_tensor(name_embeds)
    if name.ndim < 2:
        raise ValueError(f"name_embeds must be (..., name_tokens, dim), got shape {tuple(name.shape)}")
    work_dtype = torch.promote_types(name.dtype, torch.float32)
    f = name.to(work_dtype)
    f_mean = as_tensor(mean, like=f)
    try:
        torch.broadcast_shapes(f_mean.shape, f.shape)
    except RuntimeError:
        raise ValueError(
            f"mean of shape {tuple(f_mean.shape)} does not fit names of {tuple(f.shape)}"
        ) from None
    if delta != 1.0:
        f = f_mean + delta * (f - f_mean)
    if name_scale is not None:
        dims = (-1,) if per_token else (-2, -1)
        norm = torch.linalg.vector_norm(f, dim=dims, keepdim=True)
        f = name_scale * f / norm.clamp_min(_EPS)
    return like_input(f.to(name.dtype), name_embeds)

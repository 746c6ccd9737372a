"""Blending two name embeddings into a fictional identity (MagicNaming section 4)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from inference._tensors import as_tensor, like_input

# Below this angle (radians) slerp is numerically a lerp; we also fall back to lerp for antiparallel inputs,
# where the great circle between them is undefined.
_MIN_ANGLE = 1e-4


def interpolate(
    a: Any,
    b: Any,
    t: float,
    method: Literal["slerp", "lerp"] = "slerp",
    per_token: bool = False,
) -> Any:
    """Interpolate name embeddings (..., K, D): ``t=0`` returns ``a`` and ``t=1`` returns ``b`` exactly.

    ``slerp`` moves along the great circle over the whole (K, D) embedding (per token row with ``per_token``),
    so two embeddings of equal norm give blends of that same norm, keeping the blend in the range of real names;
    ``lerp`` is the straight line. ``t`` outside [0, 1] extrapolates.
    """
    if method not in ("slerp", "lerp"):
        raise ValueError(f"method must be 'slerp' or 'lerp', got {method!r}")
    if t == 0:
        return a
    if t == 1:
        return b
    ta = as_tensor(a)
    tb = as_tensor(b, like=ta)
    if ta.shape != tb.shape:
        raise ValueError(f"cannot interpolate between shapes {tuple(ta.shape)} and {tuple(tb.shape)}")
    work_dtype = torch.promote_types(ta.dtype, torch.float32)
    x, y = ta.to(work_dtype), tb.to(work_dtype)
    lerp = (1 - t) * x + t * y
    if method == "lerp":
        return like_input(lerp.to(ta.dtype), a)
    if x.ndim < 1 or (not per_token and x.ndim < 2):
        raise ValueError(f"slerp needs (..., name_tokens, dim) inputs, got shape {tuple(x.shape)}")
    dims = (-1,) if per_token else (-2, -1)
    x_norm = torch.linalg.vector_norm(x, dim=dims, keepdim=True).clamp_min(1e-12)
    y_norm = torch.linalg.vector_norm(y, dim=dims, keepdim=True).clamp_min(1e-12)
    cos = ((x / x_norm) * (y / y_norm)).sum(dim=dims, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin_omega = torch.sin(omega)
    degenerate = (omega < _MIN_ANGLE) | (torch.pi - omega < _MIN_ANGLE)
    safe_sin = torch.where(degenerate, torch.ones_like(sin_omega), sin_omega)
    slerp = (torch.sin((1 - t) * omega) * x + torch.sin(t * omega) * y) / safe_sin
    out = torch.where(degenerate, lerp, slerp)
    return like_input(out.to(ta.dtype), a)

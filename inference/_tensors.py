"""Accept NumPy arrays or torch tensors alike: compute in torch, hand back the caller's type."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_tensor(x: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` as a tensor, on ``like``'s device and dtype when given."""
    tensor = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if like is not None:
        tensor = tensor.to(device=like.device, dtype=like.dtype)
    return tensor


def like_input(result: torch.Tensor, original: Any) -> Any:
    """NumPy in, NumPy out (same dtype); tensors stay tensors."""
    if isinstance(original, torch.Tensor):
        return result
    return result.detach().cpu().numpy().astype(np.asarray(original).dtype, copy=False)

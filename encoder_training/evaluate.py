"""Validation metrics: MSE (the training loss, paper eq. 3), per-token cosine, and name retrieval.

Retrieval asks the question that matters downstream: is the nearest ground-truth name embedding (L2, among ALL
identities, training ones included) to the prediction the image's own identity?
"""

from __future__ import annotations

import numpy as np
import torch


def name_metrics(
    predictions: torch.Tensor,
    identity_index: torch.Tensor,
    all_targets: torch.Tensor,
    ks: tuple[int, ...] = (1, 5),
    chunk: int = 1024,
) -> dict[str, float]:
    """Metrics of predictions [n, T, D] for images of identities ``identity_index`` [n] against targets [N, T, D]."""
    n = predictions.shape[0]
    if n == 0:
        return {}
    predictions = predictions.float()
    all_targets = all_targets.float().to(predictions.device)
    identity_index = identity_index.to(predictions.device)
    targets = all_targets[identity_index]
    mse = torch.mean((predictions - targets) ** 2).item()
    cosine = torch.nn.functional.cosine_similarity(predictions, targets, dim=-1).mean().item()
    flat_targets = all_targets.reshape(all_targets.shape[0], -1)
    target_sq = (flat_targets**2).sum(dim=1)
    hits = {k: 0 for k in ks}
    for start in range(0, n, chunk):
        flat = predictions[start : start + chunk].reshape(-1, flat_targets.shape[1])
        # squared L2 distance up to the per-row constant |p|^2
        distance = target_sq[None, :] - 2 * flat @ flat_targets.T
        order = torch.argsort(distance, dim=1)
        truth = identity_index[start : start + chunk, None]
        for k in ks:
            hits[k] += int((order[:, :k] == truth).any(dim=1).sum().item())
    metrics = {"mse": mse, "cosine": cosine, "n": float(n)}
    metrics.update({f"top{k}": hits[k] / n for k in ks})
    return metrics


def chance_top1(num_identities: int) -> float:
    return 1.0 / max(num_identities, 1)


def summarize(metrics: dict[str, dict[str, float]]) -> str:
    """One line per split for logs: ``val_image mse=0.0123 cos=0.812 top1=0.750 top5=0.950``."""
    lines = []
    for split, values in metrics.items():
        parts = [f"{k}={v:.4g}" for k, v in values.items() if k != "n" and np.isfinite(v)]
        lines.append(f"{split} (n={int(values.get('n', 0))}): " + " ".join(parts))
    return "\n".join(lines)

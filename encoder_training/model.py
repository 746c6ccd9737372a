"""The image -> name-embedding encoder: CLIP image towers (frozen by default) + a 3-layer MLP head.

Paper Fig. 2b: CLIP ViT-L/14 (768) and OpenCLIP ViT-bigG/14 (1280) image embeds, concatenated (2048), three
fully connected layers to num_tokens * D (8 x 2048 for SDXL). Every width here comes from the towers and the data,
so tiny towers built from a config run through the very same code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

TINY_PROJECTION_DIMS = (16, 24)
# The paper's two towers as CLIPVisionConfig kwargs (public architecture numbers of CLIP ViT-L/14 and OpenCLIP
# ViT-bigG/14 at 224 px): random-weight stand-ins of the real size for benchmarks and GPU checks.
SDXL_TOWER_CONFIGS = {
    "CLIP ViT-L/14 @224": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=768,
        hidden_act="quick_gelu",
    ),
    "OpenCLIP ViT-bigG/14 @224": dict(
        hidden_size=1664,
        intermediate_size=8192,
        num_hidden_layers=48,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=1280,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    ),
}


def load_tower(source: str) -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    """A CLIP image tower and its processor from a model id or a local directory (no downloads offline)."""
    model = CLIPVisionModelWithProjection.from_pretrained(source)
    processor = CLIPImageProcessor.from_pretrained(source)
    model.eval()
    return model, processor


def build_tiny_towers(out_dir: str | Path, seed: int = 0, projection_dims=TINY_PROJECTION_DIMS) -> list[str]:
    """Save random tiny CLIP image towers (32 px, patch 8, width 32, 2 layers) loadable by ``load_tower``.

    For tests and smoke runs only: their features are random projections, NOT meaningful CLIP features.
    """
    out_dir = Path(out_dir)
    sources = []
    for i, projection_dim in enumerate(projection_dims):
        path = out_dir / f"tower{i}"
        if not (path / "config.json").is_file():
            torch.manual_seed(seed + i)
            config = CLIPVisionConfig(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                projection_dim=projection_dim,
            )
            CLIPVisionModelWithProjection(config).save_pretrained(path)
            CLIPImageProcessor(
                size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
            ).save_pretrained(path)
        sources.append(str(path))
    return sources


def set_trainable_blocks(tower: CLIPVisionModelWithProjection, unfreeze_last_blocks: int) -> None:
    """Freeze the tower, then unfreeze its last ``unfreeze_last_blocks`` blocks, final norm and projection."""
    tower.requires_grad_(False)
    if unfreeze_last_blocks <= 0:
        return
    for layer in tower.vision_model.encoder.layers[-unfreeze_last_blocks:]:
        layer.requires_grad_(True)
    tower.vision_model.post_layernorm.requires_grad_(True)
    tower.visual_projection.requires_grad_(True)


class NameHead(nn.Module):
    """Three fully connected layers: concatenated image embeds -> [num_tokens, embedding_dim]."""

    def __init__(self, in_dim: int, hidden_dim: int, num_tokens: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_tokens, self.embedding_dim = num_tokens, embedding_dim
        # Fixed per-dimension standardisation of the input, set from training features (``set_input_stats``):
        # CLIP embeds differ across faces by small amounts in a few directions; this puts them on unit scale.
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, num_tokens * embedding_dim),
        )

    @torch.no_grad()
    def set_input_stats(self, features: torch.Tensor, eps: float = 1e-6) -> None:
        self.input_mean.copy_(features.float().mean(dim=0))
        self.input_std.copy_(features.float().std(dim=0, unbiased=False).clamp_min(eps))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        standardized = (features.float() - self.input_mean) / self.input_std
        return self.layers(standardized).view(-1, self.num_tokens, self.embedding_dim)


class TowerFeatures(nn.Module):
    """The CLIP towers as one feature extractor: per-tower image embeds, optionally L2-normalised, concatenated."""

    def __init__(
        self,
        towers: list[CLIPVisionModelWithProjection],
        processors: list[CLIPImageProcessor],
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.towers = nn.ModuleList(towers)
        self.processors = processors
        self.normalize = normalize
        # Towers whose processors agree (ViT-L/14 and bigG/14 both use 224 px and CLIP's mean/std) share one pass.
        self._processor_groups: dict[str, list[int]] = {}
        for i, processor in enumerate(processors):
            self._processor_groups.setdefault(processor.to_json_string(), []).append(i)

    @property
    def out_dim(self) -> int:
        return sum(int(t.config.projection_dim) for t in self.towers)

    def pixel_values(self, crops: list[Image.Image]) -> list[torch.Tensor]:
        """Each tower's preprocessed input for a list of RGB face crops."""
        values: list[torch.Tensor | None] = [None] * len(self.towers)
        for indices in self._processor_groups.values():
            pixels = self.processors[indices[0]](images=crops, return_tensors="pt")["pixel_values"]
            for i in indices:
                values[i] = pixels
        return values  # type: ignore[return-value]

    def forward(self, pixel_values: list[torch.Tensor]) -> torch.Tensor:
        embeds = []
        for tower, pixels in zip(self.towers, pixel_values, strict=True):
            out = tower(pixel_values=pixels.to(tower.device, dtype=tower.dtype)).image_embeds.float()
            embeds.append(nn.functional.normalize(out, dim=-1) if self.normalize else out)
        return torch.cat(embeds, dim=-1)


class NameEncoder(nn.Module):
    """Face crop -> predicted name embedding [num_tokens, embedding_dim], the model the inference side uses."""

    def __init__(self, features: TowerFeatures | None, head: NameHead) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, pixel_values: list[torch.Tensor]) -> torch.Tensor:
        if self.features is None:
            raise RuntimeError("this NameEncoder was loaded without its towers (load_towers=False)")
        return self.head(self.features(pixel_values))

    @torch.no_grad()
    def encode_crops(self, crops: list[Image.Image]) -> torch.Tensor:
        """Predicted name embeddings for RGB face crops (see ``encoder_training.data.face_crop``)."""
        if self.features is None:
            raise RuntimeError("this NameEncoder was loaded without its towers (load_towers=False)")
        return self(self.features.pixel_values(crops))


def load_tower_features(sources: list[str], normalize: bool = True) -> TowerFeatures:
    loaded = [load_tower(source) for source in sources]
    return TowerFeatures([m for m, _ in loaded], [p for _, p in loaded], normalize=normalize)

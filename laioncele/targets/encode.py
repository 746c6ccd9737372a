"""Name targets: what SDXL's text side makes of each identity's name (MagicNaming, section 3).

A name's target is what ``StableDiffusionXLPipeline.encode_prompt`` produces for the name as a prompt: each of
the two CLIP text encoders' penultimate hidden states (``hidden_states[-2]``), concatenated per token (768 + 1280
= 2048 in SDXL), at the ``num_tokens`` (8) positions right after BOS. Names shorter than that keep their EOS and
padding positions, as the paper describes: with SDXL's tokenizers a short name's tail is EOS rows in the first
encoder's half and EOS-then-"!" rows in the second's. We also keep the pooled ``text_embeds`` of the second
encoder, which SDXL feeds to the UNet's added conditioning.

Everything is returned as float32 NumPy arrays; ``to_float16`` makes the compact dataset copy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa

from laioncele.config import TargetsConfig
from laioncele.io.schema import NAME_TARGETS, conform

if TYPE_CHECKING:
    import torch

FLOAT16_MAX = float(np.finfo(np.float16).max)


class SDXLTextEncoders(NamedTuple):
    """SDXL's text side, in the order ``encode_names`` takes it: ``encode_names(names, *encoders)``."""

    tokenizer: Any
    tokenizer_2: Any
    text_encoder: Any  # transformers CLIPTextModel (CLIP ViT-L/14 in SDXL)
    text_encoder_2: Any  # transformers CLIPTextModelWithProjection (OpenCLIP ViT-bigG/14 in SDXL)


def resolve_device_dtype(device: str | None = None, dtype: Any = None) -> tuple[torch.device, torch.dtype]:
    """Default to CUDA in float16 when present, else CPU in float32 (half precision is slow or absent on CPU)."""
    import torch

    resolved_device = torch.device(
        device if device is not None else "cuda" if torch.cuda.is_available() else "cpu"
    )
    if dtype is None or dtype == "auto":
        resolved_dtype = torch.float16 if resolved_device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        resolved_dtype = getattr(torch, dtype)
    else:
        resolved_dtype = dtype
    return resolved_device, resolved_dtype


def load_text_encoders(
    source: str,
    device: str | None = None,
    dtype: Any = None,
    *,
    variant: str | None = None,
    builtin_tokenizers: bool = False,
) -> SDXLTextEncoders:
    """Load SDXL's tokenizers and text encoders from a diffusers repo id or a local diffusers directory.

    ``source`` must hold the subfolders ``tokenizer``, ``tokenizer_2``, ``text_encoder`` and ``text_encoder_2``
    (a repo id is read from the local cache when ``HF_HUB_OFFLINE`` is set). ``builtin_tokenizers`` uses the CLIP
    vocabulary shipped with this package instead of the source's tokenizer folders.
    """
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from laioncele.targets.tokenizers import build_sdxl_tokenizers

    torch_device, torch_dtype = resolve_device_dtype(device, dtype)
    if builtin_tokenizers:
        tokenizer, tokenizer_2 = build_sdxl_tokenizers()
    else:
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        tokenizer_2 = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer_2")
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if variant is not None:
        kwargs["variant"] = variant
    text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kwargs)
    text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(source, subfolder="text_encoder_2", **kwargs)
    return SDXLTextEncoders(
        tokenizer,
        tokenizer_2,
        text_encoder.to(torch_device).eval(),
        text_encoder_2.to(torch_device).eval(),
    )


TINY_RANDOM_SOURCE = "tiny-random"
TINY_TEXT_WIDTHS = (32, 64)


def build_tiny_text_encoders(seed: int = 0) -> tuple[Any, Any]:
    """``(text_encoder, text_encoder_2)``: CLIPTextModel and CLIPTextModelWithProjection with random weights.

    Tiny (widths 32 and 64, 3 layers) but with CLIP's real vocabulary, so SDXL's real tokenisation runs: what the
    embedded sample and the tests use where real SDXL weights are not available (``targets.source: tiny-random``).
    The targets they produce are NOT meaningful name embeddings."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def config(width: int, layers: int, eos_token_id: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=49_408,
            hidden_size=width,
            intermediate_size=2 * width,
            num_attention_heads=4,
            num_hidden_layers=layers,
            max_position_embeddings=77,
            projection_dim=16,
            hidden_act="gelu",
            bos_token_id=49_406,
            eos_token_id=eos_token_id,
            pad_token_id=1,
        )

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(config(TINY_TEXT_WIDTHS[0], 3, eos_token_id=49_407)).eval()
    # SDXL's own text_encoder_2 config keeps the legacy eos_token_id=2 (pooling at the highest id, i.e. EOS).
    text_encoder_2 = CLIPTextModelWithProjection(config(TINY_TEXT_WIDTHS[1], 3, eos_token_id=2)).eval()
    return text_encoder, text_encoder_2


def text_encoder_revision(source: str) -> str:
    """Which text encoders produced the targets, for the dataset manifest: the hub snapshot's commit for a repo
    id (from the local cache; nothing is downloaded), a content hash of the encoders' configs and weight-file
    sizes for a local directory, or the tiny stand-in's name."""
    import hashlib
    from pathlib import Path

    if source == TINY_RANDOM_SOURCE:
        return "tiny-random (seed 0; not real SDXL weights)"
    root = Path(source)
    if root.is_dir():
        digest = hashlib.sha256()
        for sub in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
            for path in sorted((root / sub).glob("*")):
                if path.suffix == ".json" or path.name.endswith(".txt"):
                    digest.update(path.name.encode() + path.read_bytes())
                elif path.is_file():
                    digest.update(f"{path.name}:{path.stat().st_size}".encode())
        return f"dir-sha256:{digest.hexdigest()[:16]}"
    try:
        from huggingface_hub import snapshot_download

        return f"{source}@{Path(snapshot_download(source, local_files_only=True)).name}"
    except Exception:  # not in the local cache: the run would have failed to load it anyway
        return f"{source}@unknown"


def load_text_encoders_from_config(config: TargetsConfig | None = None) -> SDXLTextEncoders:
    config = config or TargetsConfig()
    if config.source == TINY_RANDOM_SOURCE:
        from laioncele.targets.tokenizers import build_sdxl_tokenizers

        tokenizer, tokenizer_2 = build_sdxl_tokenizers()
        return SDXLTextEncoders(tokenizer, tokenizer_2, *build_tiny_text_encoders(seed=0))
    return load_text_encoders(
        config.source,
        config.device,
        config.dtype,
        variant=config.variant,
        builtin_tokenizers=config.builtin_tokenizers,
    )


def tokenize_like_sdxl(names: Sequence[str], tokenizer: Any) -> torch.Tensor:
    """Token ids exactly as ``encode_prompt`` makes them: padded to ``model_max_length`` (77) and truncated."""
    return tokenizer(
        list(names),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def _context_length(input_ids: torch.Tensor, eos_id: int, num_tokens: int) -> int:
    """Shortest prefix holding every row's first EOS and the target positions.

    CLIP's text transformer is causal, so hidden states at positions < L and the pooled output (read at the EOS
    position) do not depend on tokens at positions >= L: running only the prefix gives identical values, ~7x
    cheaper for typical 2-4 token names than the full 77.
    """
    is_eos = input_ids == eos_id
    first_eos = np.where(
        is_eos.any(dim=1).numpy(), is_eos.int().argmax(dim=1).numpy(), input_ids.shape[1] - 1
    )
    return int(min(input_ids.shape[1], max(num_tokens + 1, int(first_eos.max()) + 1)))


def _penultimate(text_encoder: Any, input_ids: torch.Tensor) -> Any:
    device = next(text_encoder.parameters()).device
    return text_encoder(input_ids.to(device), output_hidden_states=True)


def encode_names(
    names: Sequence[str],
    tokenizer: Any,
    tokenizer_2: Any,
    text_encoder: Any,
    text_encoder_2: Any,
    *,
    num_tokens: int = 8,
    batch_size: int = 256,
    trim_to_eos: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode names the way SDXL encodes prompts and keep the ``num_tokens`` positions after BOS.

    Returns ``(name_embeddings, pooled)``: float32 arrays of shape ``(N, num_tokens, D1 + D2)`` (D = 2048 in SDXL)
    and ``(N, P)`` (the second encoder's projected ``text_embeds``, P = 1280 in SDXL), row i for ``names[i]``.
    Works for any diffusers-compatible pair of CLIP text encoders (real or tiny) on any device and dtype.
    """
    import torch

    names = list(names)
    if not all(isinstance(name, str) for name in names):
        raise TypeError("encode_names takes strings; filter bad rows first (see encode_target_batch)")
    max_tokens = min(tokenizer.model_max_length, tokenizer_2.model_max_length) - 1
    if not 1 <= num_tokens <= max_tokens:
        raise ValueError(f"num_tokens must be in 1..{max_tokens}, got {num_tokens}")
    width = text_encoder.config.hidden_size + text_encoder_2.config.hidden_size
    embeddings = np.empty((len(names), num_tokens, width), dtype=np.float32)
    pooled = np.empty((len(names), text_encoder_2.config.projection_dim), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(names), batch_size):
            chunk = names[start : start + batch_size]
            halves = []
            outputs = []
            for tok, encoder in ((tokenizer, text_encoder), (tokenizer_2, text_encoder_2)):
                ids = tokenize_like_sdxl(chunk, tok)
                if trim_to_eos:
                    ids = ids[:, : _context_length(ids, tok.eos_token_id, num_tokens)]
                outputs.append(_penultimate(encoder, ids))
                halves.append(outputs[-1].hidden_states[-2][:, 1 : num_tokens + 1].float().cpu())
            embeddings[start : start + len(chunk)] = torch.cat(halves, dim=-1).numpy()
            # SDXL's pooled conditioning is the second encoder's projected EOS state only.
            pooled[start : start + len(chunk)] = outputs[1].text_embeds.float().cpu().numpy()
    return embeddings, pooled


def mean_name_embedding(name_embeddings: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """F_mean of the paper's eq. 4: the mean name embedding over all identities, shape ``(num_tokens, D)``.

    Takes one array or an iterable of batches (e.g. one per shard) and accumulates in float64, so it is exact
    enough over millions of float16 rows.
    """
    batches = [name_embeddings] if isinstance(name_embeddings, np.ndarray) else name_embeddings
    total: np.ndarray | None = None
    count = 0
    for batch in batches:
        batch = np.asarray(batch)
        if batch.ndim != 3:
            raise ValueError(f"expected (N, num_tokens, D) name embeddings, got shape {batch.shape}")
        batch_sum = batch.sum(axis=0, dtype=np.float64)
        if total is not None and total.shape != batch_sum.shape:
            raise ValueError(
                f"batch of shape {batch.shape} does not match earlier (*, {total.shape}) batches"
            )
        total = batch_sum if total is None else total + batch_sum
        count += batch.shape[0]
    if total is None or count == 0:
        raise ValueError("mean_name_embedding needs at least one name embedding")
    return (total / count).astype(np.float32)


def float16_row_ok(array: np.ndarray) -> np.ndarray:
    """Per row: finite and inside float16's range, i.e. storable in float16 without inf."""
    flat = np.asarray(array, dtype=np.float32).reshape(len(array), -1)
    return np.isfinite(flat).all(axis=1) & (np.abs(flat) <= FLOAT16_MAX).all(axis=1)


def to_float16(array: np.ndarray) -> np.ndarray:
    """The dataset's storage precision. Raises instead of silently storing inf for out-of-range values."""
    array = np.asarray(array)
    if array.size and not float16_row_ok(array.reshape(len(array), -1)).all():
        raise ValueError("values are non-finite or outside float16's range; drop those rows first")
    return array.astype(np.float16)


@dataclass
class TargetBatch:
    """Targets of the rows that survived, which input rows they came from, and why the others were dropped."""

    row_index: np.ndarray  # (M,) int64 indices into the input names
    name_embeddings: np.ndarray  # (M, num_tokens, D) float16
    pooled: np.ndarray  # (M, P) float16
    n_name_tokens: (
        np.ndarray
    )  # (M,) int32 name tokens without BOS/EOS (may exceed num_tokens: truncated target)
    drops: Counter[str]


def count_name_tokens(names: Sequence[str], tokenizer: Any) -> np.ndarray:
    ids = tokenizer(list(names), add_special_tokens=False).input_ids
    return np.array([len(row) for row in ids], dtype=np.int32)


def encode_target_batch(
    names: Sequence[object],
    encoders: SDXLTextEncoders,
    config: TargetsConfig | None = None,
) -> TargetBatch:
    """``encode_names`` for pipeline batches: skips bad rows (counted by reason) and returns float16 targets.

    Drop reasons: ``not_a_string``, ``empty_name``, ``non_finite_or_float16_overflow``.
    """
    config = config or TargetsConfig()
    drops: Counter[str] = Counter()
    keep: list[int] = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            drops["not_a_string"] += 1
        elif not name.strip():
            drops["empty_name"] += 1
        else:
            keep.append(i)
    kept_names = [str(names[i]).strip() for i in keep]
    width = encoders.text_encoder.config.hidden_size + encoders.text_encoder_2.config.hidden_size
    if kept_names:
        embeddings, pooled = encode_names(
            kept_names,
            *encoders,
            num_tokens=config.num_tokens,
            batch_size=config.batch_size,
            trim_to_eos=config.trim_to_eos,
        )
        n_tokens = count_name_tokens(kept_names, encoders.tokenizer)
    else:
        embeddings = np.zeros((0, config.num_tokens, width), np.float32)
        pooled = np.zeros((0, encoders.text_encoder_2.config.projection_dim), np.float32)
        n_tokens = np.zeros(0, np.int32)
    ok = float16_row_ok(embeddings) & float16_row_ok(pooled)
    if (~ok).any():
        drops["non_finite_or_float16_overflow"] += int((~ok).sum())
    return TargetBatch(
        row_index=np.asarray(keep, dtype=np.int64)[ok],
        name_embeddings=embeddings[ok].astype(np.float16),
        pooled=pooled[ok].astype(np.float16),
        n_name_tokens=n_tokens[ok],
        drops=drops,
    )


def _list_column(array: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(array, dtype=np.float16).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(array.shape[1:]))).cast(pa.list_(pa.float16()))


def targets_table(name_keys: Sequence[str], display_names: Sequence[str], batch: TargetBatch) -> pa.Table:
    """Rows of the ``name_targets`` schema; ``name_keys``/``display_names`` are the input rows of the batch."""
    keys = [name_keys[i] for i in batch.row_index]
    shown = [display_names[i] for i in batch.row_index]
    num_tokens, width = batch.name_embeddings.shape[1:] if batch.name_embeddings.ndim == 3 else (0, 0)
    table = pa.table(
        {
            "name_key": pa.array(keys, pa.string()),
            "display_name": pa.array(shown, pa.string()),
            "n_name_tokens": pa.array(batch.n_name_tokens, pa.int32()),
            "num_tokens": pa.array(np.full(len(keys), num_tokens, np.int32)),
            "embedding_dim": pa.array(np.full(len(keys), width, np.int32)),
            "name_embedding": _list_column(batch.name_embeddings),
            "pooled_embedding": _list_column(batch.pooled),
        }
    )
    return conform(table, NAME_TARGETS)


def embeddings_from_table(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``(name_embeddings (N, num_tokens, D), pooled (N, P))`` as float16 from a ``name_targets`` table."""
    n = table.num_rows
    if n == 0:
        return np.zeros((0, 0, 0), np.float16), np.zeros((0, 0), np.float16)
    num_tokens = int(table.column("num_tokens")[0].as_py())
    width = int(table.column("embedding_dim")[0].as_py())
    emb = table.column("name_embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    pooled = table.column("pooled_embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return emb.reshape(n, num_tokens, width), pooled.reshape(n, -1)

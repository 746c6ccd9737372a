"""SDXL's two CLIP tokenizers, built offline from the BPE vocabulary shipped in ``laioncele/data``.

SDXL tokenises every prompt twice with the same 49,408-token CLIP BPE vocabulary; the two tokenizers differ only
in their padding token: ``tokenizer`` (CLIP ViT-L/14) pads with ``<|endoftext|>`` (id 49407) and ``tokenizer_2``
(OpenCLIP ViT-bigG/14) pads with ``"!"`` (id 0). Both truncate/pad to 77 tokens. Name targets depend on those
padding ids (short names carry padding tokens inside their 8 target positions), so they must match exactly.

``data/bpe_simple_vocab_16e6.txt.gz`` is the BPE merge list of OpenAI's CLIP (MIT licence), as redistributed in
the open_clip package (MIT licence); see ``data/LICENSE-clip-bpe.txt``. Shipping it (1.3 MB) keeps the project
installable and testable without any model hub.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

BPE_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49_408
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
BOS_ID = 49_406
EOS_ID = 49_407
MODEL_MAX_LENGTH = 77
# CLIP keeps the first 49152 - 256 - 2 merges of the file (after its header line), so that byte tokens, their
# end-of-word forms, the merges and the two special tokens add up to exactly 49,408 ids.
_N_MERGES = 49_152 - 256 - 2


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable-unicode table (as in OpenAI CLIP and GPT-2)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def default_bpe_path() -> Path:
    return Path(str(resources.files("laioncele") / "data" / BPE_VOCAB_FILE))


@lru_cache(maxsize=4)
def load_clip_bpe(path: str | None = None) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Vocabulary (token -> id) and merge list exactly as CLIP builds them from the gzipped BPE file."""
    bpe_path = Path(path) if path is not None else default_bpe_path()
    lines = gzip.decompress(bpe_path.read_bytes()).decode("utf-8").split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1 : _N_MERGES + 1])
    if len(merges) != _N_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{bpe_path} is not CLIP's BPE merge file (expected {_N_MERGES} pair lines)")
    byte_tokens = list(bytes_to_unicode().values())
    tokens = (
        byte_tokens
        + [t + "</w>" for t in byte_tokens]
        + ["".join(m) for m in merges]
        + [BOS_TOKEN, EOS_TOKEN]
    )
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE or vocab[BOS_TOKEN] != BOS_ID or vocab[EOS_TOKEN] != EOS_ID:
        raise ValueError(f"{bpe_path} yields {len(vocab)} distinct tokens, not CLIP's {VOCAB_SIZE}")
    return vocab, merges  # type: ignore[return-value]


def build_clip_tokenizer(pad_token: str, bpe_path: str | None = None) -> CLIPTokenizer:
    """A transformers ``CLIPTokenizer`` over CLIP's vocabulary with the given padding token.

    transformers 5.x takes the vocabulary as ``vocab=``/``merges=`` objects; a ``vocab_file=`` argument is
    silently ignored there, which would leave a 3-token vocabulary.
    """
    from transformers import CLIPTokenizer

    vocab, merges = load_clip_bpe(bpe_path)
    tokenizer = CLIPTokenizer(
        vocab=dict(vocab),
        merges=[tuple(m) for m in merges],
        pad_token=pad_token,
        model_max_length=MODEL_MAX_LENGTH,
    )
    if len(tokenizer) != VOCAB_SIZE or tokenizer.bos_token_id != BOS_ID or tokenizer.eos_token_id != EOS_ID:
        raise RuntimeError(f"this transformers version built a CLIP tokenizer of {len(tokenizer)} tokens")
    return tokenizer


def build_sdxl_tokenizers(bpe_path: str | None = None) -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """``(tokenizer, tokenizer_2)`` encoding exactly like SDXL's: padding with EOS and with ``"!"`` (id 0)."""
    return build_clip_tokenizer(EOS_TOKEN, bpe_path), build_clip_tokenizer("!", bpe_path)

"""Name targets: SDXL tokenisation from the shipped vocabulary and text-encoder outputs equal to diffusers' own."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
import torch
from tiny_sdxl import (
    PROJECTION_DIM,
    TEXT_WIDTH_1,
    TEXT_WIDTH_2,
    build_tiny_sdxl_pipeline,
    save_tiny_text_side,
)

from laioncele.config import Config, TargetsConfig, load_config
from laioncele.io.schema import NAME_TARGETS, SCHEMAS
from laioncele.targets.encode import (
    SDXLTextEncoders,
    embeddings_from_table,
    encode_names,
    encode_target_batch,
    load_text_encoders,
    mean_name_embedding,
    targets_table,
    to_float16,
    tokenize_like_sdxl,
)
from laioncele.targets.tokenizers import (
    BOS_ID,
    EOS_ID,
    build_clip_tokenizer,
    build_sdxl_tokenizers,
    default_bpe_path,
)

# OpenAI CLIP's bpe_simple_vocab_16e6.txt.gz, as published with CLIP and open_clip.
CLIP_BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
WIDTH = TEXT_WIDTH_1 + TEXT_WIDTH_2
NAMES = [
    "Cher",
    "Taylor Swift",
    "Jean-Claude Van Damme",
    "Leonardo Wilhelm DiCaprio of the very long name ever",
]


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_sdxl_pipeline(seed=0)


@pytest.fixture(scope="module")
def encoders(pipe) -> SDXLTextEncoders:
    return SDXLTextEncoders(pipe.tokenizer, pipe.tokenizer_2, pipe.text_encoder, pipe.text_encoder_2)


def test_shipped_bpe_file_is_clips():
    assert hashlib.sha256(default_bpe_path().read_bytes()).hexdigest() == CLIP_BPE_SHA256


def test_tokenizers_encode_and_pad_like_sdxl():
    tokenizer, tokenizer_2 = build_sdxl_tokenizers()
    cat = [BOS_ID, 320, 1125, 539, 320, 2368, EOS_ID]
    ids_1 = tokenize_like_sdxl(["a photo of a cat"], tokenizer)[0].tolist()
    ids_2 = tokenize_like_sdxl(["a photo of a cat"], tokenizer_2)[0].tolist()
    assert len(tokenizer) == len(tokenizer_2) == 49_408
    assert len(ids_1) == len(ids_2) == 77
    assert ids_1 == cat + [EOS_ID] * 70  # tokenizer (ViT-L) pads with EOS
    assert ids_2 == cat + [0] * 70  # tokenizer_2 (bigG) pads with "!" = id 0
    assert tokenizer.decode(ids_1[1:6]) == "a photo of a cat"
    long_ids = tokenize_like_sdxl(["cat " * 100], tokenizer_2)[0].tolist()
    assert (
        len(long_ids) == 77
        and long_ids[0] == BOS_ID
        and long_ids[-1] == EOS_ID
        and long_ids[1:76] == [2368] * 75
    )


def test_encode_names_matches_diffusers_encode_prompt(pipe, encoders):
    """Token for token equal to StableDiffusionXLPipeline.encode_prompt's positions 1..8 and its pooled output."""
    trimmed, pooled_trimmed = encode_names(NAMES, *encoders, batch_size=3, trim_to_eos=True)
    full, pooled_full = encode_names(NAMES, *encoders, batch_size=3, trim_to_eos=False)
    assert trimmed.shape == (len(NAMES), 8, WIDTH) and trimmed.dtype == np.float32
    assert pooled_trimmed.shape == (len(NAMES), PROJECTION_DIM) and pooled_trimmed.dtype == np.float32
    for i, name in enumerate(NAMES):
        with torch.no_grad():
            prompt_embeds, _, pooled, _ = pipe.encode_prompt(
                name, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        assert prompt_embeds.shape == (1, 77, WIDTH)
        expected = prompt_embeds[0, 1:9].numpy()
        for ours, ours_pooled in ((trimmed, pooled_trimmed), (full, pooled_full)):
            np.testing.assert_allclose(ours[i], expected, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(ours_pooled[i], pooled[0].numpy(), rtol=1e-5, atol=1e-5)


def test_targets_exclude_bos(encoders):
    """Position 0 (BOS) sees only itself under causal attention: same row for every name, and never in a target."""
    targets, _ = encode_names(NAMES, *encoders)
    with torch.no_grad():
        ids = tokenize_like_sdxl(NAMES, encoders.tokenizer)
        bos_rows = encoders.text_encoder(ids, output_hidden_states=True).hidden_states[-2][:, 0, :]
    np.testing.assert_allclose(bos_rows.numpy(), np.repeat(bos_rows[:1].numpy(), len(NAMES), 0), atol=1e-6)
    first_half = targets[:, :, :TEXT_WIDTH_1]
    distance_to_bos = np.abs(first_half - bos_rows[0].numpy()).max(axis=-1)
    assert (distance_to_bos > 1e-3).all()


def test_short_names_keep_eos_and_padding_tokens(encoders):
    """A one-token name's 8 targets are name, EOS, then padding: EOS for tokenizer, "!" for tokenizer_2."""
    cher = tokenize_like_sdxl(["Cher"], encoders.tokenizer)[0, 1:9].tolist()
    cher_2 = tokenize_like_sdxl(["Cher"], encoders.tokenizer_2)[0, 1:9].tolist()
    assert cher == [cher[0]] + [EOS_ID] * 7
    assert cher_2 == [cher[0], EOS_ID] + [0] * 6
    # The padding token is part of the target: padding tokenizer_2 with EOS instead changes exactly the
    # second encoder's half at positions 3..8 (causal attention leaves name and EOS rows alone).
    eos_padded_2 = build_clip_tokenizer("<|endoftext|>")
    real, _ = encode_names(["Cher"], *encoders)
    swapped, _ = encode_names(
        ["Cher"], encoders.tokenizer, eos_padded_2, encoders.text_encoder, encoders.text_encoder_2
    )
    np.testing.assert_allclose(real[0, :, :TEXT_WIDTH_1], swapped[0, :, :TEXT_WIDTH_1], atol=1e-6)
    np.testing.assert_allclose(real[0, :2, TEXT_WIDTH_1:], swapped[0, :2, TEXT_WIDTH_1:], atol=1e-6)
    assert np.abs(real[0, 2:, TEXT_WIDTH_1:] - swapped[0, 2:, TEXT_WIDTH_1:]).max(axis=-1).min() > 1e-3


def test_batching_keeps_rows_aligned(encoders):
    together, pooled_together = encode_names(NAMES, *encoders, batch_size=64)
    reversed_names = NAMES[::-1]
    apart, pooled_apart = encode_names(reversed_names, *encoders, batch_size=1)
    np.testing.assert_allclose(together, apart[::-1], atol=1e-5)
    np.testing.assert_allclose(pooled_together, pooled_apart[::-1], atol=1e-5)
    assert np.abs(together[0] - together[1]).max() > 1e-3
    with pytest.raises(ValueError, match="num_tokens"):
        encode_names(NAMES, *encoders, num_tokens=77)


def test_load_text_encoders_from_a_diffusers_folder(tmp_path, encoders):
    save_tiny_text_side(tmp_path, seed=0)
    loaded = load_text_encoders(str(tmp_path), device="cpu")
    assert loaded.text_encoder.dtype == torch.float32  # fp32 on CPU by default
    assert loaded.tokenizer.pad_token_id == EOS_ID and loaded.tokenizer_2.pad_token_id == 0
    assert loaded.tokenizer.model_max_length == loaded.tokenizer_2.model_max_length == 77
    expected, expected_pooled = encode_names(NAMES, *encoders)
    got, got_pooled = encode_names(NAMES, *loaded)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got_pooled, expected_pooled, atol=1e-6)
    builtin = load_text_encoders(str(tmp_path), device="cpu", dtype="bfloat16", builtin_tokenizers=True)
    assert builtin.text_encoder_2.dtype == torch.bfloat16
    got_bf16, _ = encode_names(NAMES, *builtin)
    assert got_bf16.dtype == np.float32
    np.testing.assert_allclose(got_bf16, expected, atol=0.1 * np.abs(expected).max())


def test_mean_name_embedding_over_batches(encoders):
    targets, _ = encode_names(NAMES, *encoders)
    mean = mean_name_embedding(targets)
    assert mean.shape == (8, WIDTH) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, targets.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(
        mean_name_embedding(iter([targets[:1], to_float16(targets[1:])])), mean, atol=1e-2
    )
    with pytest.raises(ValueError):
        mean_name_embedding([])
    with pytest.raises(ValueError):
        mean_name_embedding([targets[:, :4], targets])


def test_float16_storage_and_table_roundtrip(encoders):
    names = ["Taylor Swift", None, "   ", "Cher", 42]
    batch = encode_target_batch(names, encoders, TargetsConfig(batch_size=2))
    assert batch.drops == {"not_a_string": 2, "empty_name": 1}
    assert batch.row_index.tolist() == [0, 3]
    assert batch.name_embeddings.dtype == np.float16 and batch.name_embeddings.shape == (2, 8, WIDTH)
    assert batch.pooled.dtype == np.float16 and batch.pooled.shape == (2, PROJECTION_DIM)
    assert batch.n_name_tokens.tolist() == [2, 1]
    exact, _ = encode_names(["Taylor Swift", "Cher"], *encoders)
    np.testing.assert_allclose(batch.name_embeddings.astype(np.float32), exact, rtol=1e-3, atol=1e-3)

    keys = ["taylor swift", "none", "blank", "cher", "int"]
    table = targets_table(keys, [str(n) for n in names], batch)
    assert table.schema.equals(NAME_TARGETS, check_metadata=True) and SCHEMAS["name_targets"] is NAME_TARGETS
    assert table.column("name_key").to_pylist() == ["taylor swift", "cher"]
    embeddings, pooled = embeddings_from_table(pa.concat_tables([table.slice(0, 1), table.slice(1)]))
    np.testing.assert_array_equal(embeddings, batch.name_embeddings)
    np.testing.assert_array_equal(pooled, batch.pooled)

    with pytest.raises(ValueError, match="float16"):
        to_float16(np.array([[1.0, 1e6]], dtype=np.float32))


def test_rows_that_overflow_float16_are_dropped_and_counted(tmp_path):
    save_tiny_text_side(tmp_path, seed=1)
    loaded = load_text_encoders(str(tmp_path), device="cpu")
    with torch.no_grad():
        loaded.text_encoder_2.text_projection.weight.mul_(1e7)  # pooled output far beyond float16's 65504
    batch = encode_target_batch(["Taylor Swift", "Cher"], loaded)
    assert batch.drops == {"non_finite_or_float16_overflow": 2}
    assert batch.row_index.size == 0 and batch.name_embeddings.shape == (0, 8, WIDTH)


def test_targets_config_section():
    config = load_config(overrides=["targets.batch_size=16", "targets.source=/models/sdxl"])
    assert isinstance(config.targets, TargetsConfig)
    assert config.targets.batch_size == 16 and config.targets.source == "/models/sdxl"
    assert Config().targets.num_tokens == 8
    with pytest.raises(ValueError, match="targets"):
        load_config(overrides=["targets.num_tokens=0"])


def test_text_encoder_revision_identifies_the_encoders(tmp_path) -> None:
    from laioncele.targets.encode import text_encoder_revision

    save_tiny_text_side(tmp_path / "a", seed=0)
    save_tiny_text_side(tmp_path / "b", seed=0)
    first = text_encoder_revision(str(tmp_path / "a"))
    assert first.startswith("dir-sha256:") and first == text_encoder_revision(str(tmp_path / "b"))
    (tmp_path / "b" / "text_encoder" / "config.json").write_text('{"edited": true}')
    assert text_encoder_revision(str(tmp_path / "b")) != first
    assert "not real" in text_encoder_revision("tiny-random")
    # A repo id that is not in the local cache is named, never downloaded.
    assert text_encoder_revision("no-such-org/no-such-model").endswith("@unknown")

"""Metadata that disagrees with itself or with the tensors never reaches a kernel.

Each case is a tiny model whose hyper-parameters were changed as an attacker
would change them (the tensors shaped to match where that makes the attack
work); loading must raise ``MetadataError`` naming the key, quickly and
without a large allocation.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import kettle
from kettle.errors import KettleError, MetadataError
from kettle.gguf import GGUFFile
from kettle.models import load_model
from tests.gguf_factory import Typed, tiny_model

L = "llama."
# name -> (arch, tiny_model dims, metadata changes, key the error must name)
CASES = {
    "block_count 1e9": ("llama", {}, {L + "block_count": 10**9}, L + "block_count"),
    "block_count 2^32-1": ("llama", {}, {L + "block_count": 2**32 - 1}, L + "block_count"),
    "block_count 2^64-1": ("llama", {}, {L + "block_count": Typed(2**64 - 1, "UINT64")}, L + "block_count"),
    "block_count string": ("llama", {}, {L + "block_count": "3"}, L + "block_count"),
    "block_count array": ("llama", {}, {L + "block_count": [3]}, L + "block_count"),
    "block_count float": ("llama", {}, {L + "block_count": 3.0}, L + "block_count"),
    "block_count bool": ("llama", {}, {L + "block_count": True}, L + "block_count"),
    "block_count missing": ("llama", {}, {L + "block_count": None}, L + "block_count"),
    "head_count 0": ("llama", {}, {L + "attention.head_count": 0}, L + "attention.head_count"),
    "head_count negative": ("llama", {}, {L + "attention.head_count": Typed(-4, "INT32")}, L + "attention.head_count"),
    "head_count array too short": ("llama", {}, {L + "attention.head_count": Typed([4, 4], "ARRAY", "INT32")},
                                   L + "attention.head_count"),
    "head_count array empty": ("llama", {}, {L + "attention.head_count": Typed([], "ARRAY", "INT32")},
                               L + "attention.head_count"),
    "head_count array of strings": ("llama", {}, {L + "attention.head_count": ["4", "4", "4"]},
                                    L + "attention.head_count"),
    "head_count per layer differs": ("llama", {}, {L + "attention.head_count": Typed([4, 2, 4], "ARRAY", "INT32")},
                                     L + "attention.head_count"),
    "head_count not dividing embd": ("llama", {}, {L + "attention.head_count": 5}, L + "attention.head_count"),
    "embedding_length 0": ("llama", {}, {L + "embedding_length": 0}, L + "embedding_length"),
    "embedding_length array": ("llama", {}, {L + "embedding_length": Typed([64], "ARRAY", "INT32")},
                               L + "embedding_length"),
    "embedding_length huge": ("llama", {}, {L + "embedding_length": 2**31}, L + "embedding_length"),
    "key_length 0": ("llama", {}, {L + "attention.key_length": 0}, L + "attention.key_length"),
    "key_length huge": ("llama", {}, {L + "attention.key_length": 2**20}, L + "attention.key_length"),
    "value_length differs": ("llama", {}, {L + "attention.value_length": 8}, L + "attention.value_length"),
    "feed_forward_length 0": ("llama", {}, {L + "feed_forward_length": 0}, L + "feed_forward_length"),
    # GQA that does not divide, with q/k/v shaped to match: an out-of-bounds read in attention.
    "head_count_kv 3 of 4": ("llama", {"n_head": 4, "n_kv_head": 3}, {}, L + "attention.head_count_kv"),
    "head_count_kv above head_count": ("llama", {"n_head": 2, "n_kv_head": 4, "head_dim": 32}, {},
                                       L + "attention.head_count_kv"),
    "head_count_kv 0": ("llama", {}, {L + "attention.head_count_kv": 0}, L + "attention.head_count_kv"),
    # Rope wider than the head: an out-of-bounds write in the rope kernel.
    "rope dims 4096": ("llama", {}, {L + "rope.dimension_count": 4096}, L + "rope.dimension_count"),
    "rope dims head_dim + 2": ("llama", {}, {L + "rope.dimension_count": 18}, L + "rope.dimension_count"),
    "rope dims odd": ("llama", {}, {L + "rope.dimension_count": 15}, L + "rope.dimension_count"),
    "rope dims 0": ("llama", {}, {L + "rope.dimension_count": 0}, L + "rope.dimension_count"),
    "rope base 0": ("llama", {}, {L + "rope.freq_base": 0.0}, L + "rope.freq_base"),
    "rope base negative": ("llama", {}, {L + "rope.freq_base": -1.0}, L + "rope.freq_base"),
    "rope base inf": ("llama", {}, {L + "rope.freq_base": float("inf")}, L + "rope.freq_base"),
    "rope base string": ("llama", {}, {L + "rope.freq_base": "10000"}, L + "rope.freq_base"),
    "eps nan": ("llama", {}, {L + "attention.layer_norm_rms_epsilon": float("nan")},
                L + "attention.layer_norm_rms_epsilon"),
    "eps 0": ("llama", {}, {L + "attention.layer_norm_rms_epsilon": 0.0}, L + "attention.layer_norm_rms_epsilon"),
    "context_length 0": ("llama", {}, {L + "context_length": 0}, L + "context_length"),
    "context_length 2^32-1": ("llama", {}, {L + "context_length": 2**32 - 1}, L + "context_length"),
    "qwen2 head_count_kv 3 of 4": ("qwen2", {"n_head": 4, "n_kv_head": 3}, {}, "qwen2.attention.head_count_kv"),
    "gemma3 window 0": ("gemma3", {}, {"gemma3.attention.sliding_window": 0}, "gemma3.attention.sliding_window"),
    "gemma3 window huge": ("gemma3", {}, {"gemma3.attention.sliding_window": 2**31},
                           "gemma3.attention.sliding_window"),
    "gemma3 key_length 0": ("gemma3", {}, {"gemma3.attention.key_length": 0}, "gemma3.attention.key_length"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_hostile_metadata_is_refused_naming_the_key(tmp_path, case):
    arch, dims, meta, key = CASES[case]
    path = tiny_model(tmp_path / "m.gguf", arch=arch, qtype="F32", meta=meta, **dims)
    t0 = time.monotonic()
    with pytest.raises(MetadataError) as err:
        load_model(GGUFFile(path))
    assert time.monotonic() - t0 < 5
    assert err.value.key == key
    assert f"metadata '{key}'" in str(err.value) and "expected" in str(err.value)
    assert str(path) in str(err.value)


def test_the_error_says_what_was_expected(tmp_path):
    path = tiny_model(tmp_path / "m.gguf", n_head=4, n_kv_head=3, qtype="F32")
    with pytest.raises(MetadataError, match=r"'llama.attention.head_count_kv' is 3; expected a divisor of head_count 4"):
        load_model(GGUFFile(path))
    path = tiny_model(tmp_path / "r.gguf", qtype="F32", meta={L + "rope.dimension_count": 18})
    with pytest.raises(MetadataError, match=r"is 18; expected an even number from 2 to the head size 16"):
        load_model(GGUFFile(path))


def test_per_layer_head_counts_that_agree_are_taken(tmp_path):
    path = tiny_model(tmp_path / "m.gguf", qtype="F32", meta={L + "attention.head_count": Typed([4, 4, 4], "ARRAY", "INT32")})
    assert load_model(GGUFFile(path)).config.n_head == 4


def test_valid_files_still_load_with_their_defaults(tmp_path):
    path = tiny_model(tmp_path / "m.gguf", qtype="F32", meta={L + "rope.freq_base": None, L + "context_length": None})
    cfg = load_model(GGUFFile(path)).config
    assert cfg.layers[0].rope_base == 10000.0 and cfg.context_length == 2048 and cfg.n_rot == cfg.head_dim


def test_tokenizer_and_model_disagreeing_on_the_vocabulary(tmp_path):
    from tests.gguf_factory import tiny_vocab

    path = tiny_model(tmp_path / "m.gguf", qtype="F32", vocab=True, meta=tiny_vocab(80))
    with pytest.raises(MetadataError, match="tokenizer.ggml.tokens.*80 tokens.*96"):
        kettle.load(path)


def test_kernel_wrappers_refuse_sizes_that_do_not_fit():
    """Second line of defence: the wrappers check the sizes a kernel indexes by."""
    from kettle.ops import RopeStyle, attention, rms_norm, rope_inplace, rope_table

    x = np.zeros((2, 4 * 16), np.float32)
    with pytest.raises(ValueError, match="rope"):
        rope_inplace(x, rope_table(np.arange(2), 18, 10000.0), 4, 16, RopeStyle.NORM)
    with pytest.raises(ValueError, match="rms_norm"):
        rms_norm(x, np.ones(63, np.float32), 1e-5)
    q = np.zeros((1, 4, 16), np.float32)
    cache = np.zeros((1, 3, 8, 16), np.float32)
    with pytest.raises(ValueError, match="attention"):
        attention(q, cache, cache, np.zeros(1, np.int32), np.zeros(1, np.int32), 0, 0.25, np.empty_like(q))
    cache = np.zeros((1, 2, 8, 16), np.float32)
    with pytest.raises(ValueError, match="position 8 outside"):
        attention(q, cache, cache, np.zeros(1, np.int32), np.full(1, 8, np.int32), 0, 0.25, np.empty_like(q))


def test_a_byte_token_with_a_sign_is_a_tokenizer_error(tmp_path):
    from tests.gguf_factory import tiny_vocab

    meta = tiny_vocab(96)
    meta["tokenizer.ggml.tokens"][60] = "<0x-1>"
    path = tiny_model(tmp_path / "m.gguf", qtype="F32", meta=meta)
    with pytest.raises(KettleError, match=r"'<0x-1>' has type BYTE but is not of the form <0xXX>"):
        kettle.load(path)

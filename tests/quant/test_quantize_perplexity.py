"""kettle's quantized SmolLM2 is llama.cpp's: the same bytes, and the same perplexity through kettle
as llama.cpp measured on its own file (quantize_perplexity.json, made by make_quantize_perplexity.py).

The F32 source is the bundled Q4_1 model dequantized by kettle; each type is quantized
here, at test time, by kettle.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kettle
from kettle.quant.file import quantize_file
from tests.quant.perplexity_cases import (
    TYPES,
    chunks,
    make_f32,
    perplexity,
    sha256,
    text,
)

FIXTURE = json.loads(Path(__file__).with_name("quantize_perplexity.json").read_text())
# The same bytes do not give the same perplexity to the last digit: kettle's forward pass is not
# llama.cpp's bit for bit (llama.cpp quantizes activations to 8 bits per block and sums in another
# order), and this 1008-token perplexity magnifies that. Measured kettle / llama.cpp - 1, both with
# an f16 KV cache: Q8_0 +0.29%, Q6_K -0.58%, Q4_K_M -0.19%, Q4_0 -1.12% (kettle's float32 kernels,
# without activation quantization: Q4_0 -0.87%, Q8_0 +0.32%; kettle's f32 KV cache: Q4_0 -1.43%).
# llama.cpp moves as much by itself: llama-cpp-python's build on the bundled Q4_1 file gives 25.104,
# the oracle's build 25.244 (-0.55%), and flash attention off moves it +0.15%. So the bound is
# 1.5%, not the 0.1% identical bytes suggest; the bytes themselves are checked by sha256.
TOLERANCE = 0.015

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def f32(tmp_path_factory, smollm2_path):
    assert sha256(smollm2_path) == FIXTURE["source"]["bundled_sha256"]
    path = make_f32(smollm2_path, tmp_path_factory.mktemp("ppl") / "smollm2-f32.gguf")
    assert sha256(path) == FIXTURE["source"]["f32_sha256"]  # the source llama.cpp quantized
    yield path
    path.unlink()  # 540 MB


def test_fixture_covers_the_types():
    assert list(FIXTURE["types"]) == TYPES


@pytest.mark.parametrize("qtype", TYPES)
def test_perplexity_equals_llama_cpp_on_its_file(f32, tmp_path, qtype, record_property, monkeypatch):
    monkeypatch.setenv("KETTLE_KV_CACHE_TYPE", "f16")  # llama.cpp's, as the fixture was measured
    ref = FIXTURE["types"][qtype]
    out = tmp_path / f"smollm2-{qtype}.gguf"
    quantize_file(f32, out, qtype)
    assert sha256(out) == ref["sha256"]  # byte-identical with llama.cpp's file
    model = kettle.load(out, num_ctx=2048)
    try:
        ids = model.tokenize(text(), add_special=True, parse_special=False)
        assert len(ids) == FIXTURE["text"]["n_tokens"]
        ppl = perplexity(model.logits, chunks(ids, model.tokenizer.bos_id if model.tokenizer.add_bos else None))
    finally:
        model.close()
        out.unlink()
    record_property("perplexity", ppl)
    print(f"\n{qtype}: perplexity kettle {ppl:.4f} vs llama.cpp {ref['llama_cpp_ppl']:.4f}")
    assert abs(ppl / ref["llama_cpp_ppl"] - 1) < TOLERANCE

"""``suffix`` (fill-in-the-middle) through a vocabulary's FIM tokens, for a model whose template
names no ``.Suffix``: the prompt is llama-server's infill (FIM_PRE prefix FIM_SUF suffix FIM_MID),
``/api/show`` lists ``insert``, and a model without FIM tokens refuses as ollama does."""

from __future__ import annotations

import pytest

import kettle
from kettle.errors import CapabilityError
from kettle.gguf import GGUFFile
from kettle.request import Kind, PromptRequest, build_prompt
from kettle.server.models import capabilities_of
from kettle.tokenizer.markers import has_fim
from tests.gguf_factory import tiny_model, tiny_vocab

FIM = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]


def _fim_vocab() -> dict:
    vocab = tiny_vocab(96)
    tokens, types = list(vocab["tokenizer.ggml.tokens"]), list(vocab["tokenizer.ggml.token_type"])
    tokens[-3:], types[-3:] = FIM, [3, 3, 3]  # the last byte tokens become the FIM controls
    return {"tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types}


@pytest.fixture(scope="module")
def fim_model(tmp_path_factory):
    path = tiny_model(tmp_path_factory.mktemp("fim") / "fim.gguf", vocab=True, meta=_fim_vocab())
    m = kettle.load(path, num_ctx=128)
    yield m
    m.close()


def test_infill_prompt_is_prefix_suffix_middle(fim_model) -> None:
    tok = fim_model.tokenizer
    pre, suf, mid = (96 - 3, 96 - 2, 96 - 1)
    built = build_prompt(fim_model.prompts, fim_model.n_ctx,
                         PromptRequest(Kind.GENERATE, prompt="def add", suffix="return c"))
    want = [pre, *tok.encode("def add", add_special=False), suf, *tok.encode("return c", add_special=False), mid]
    if tok.add_bos:
        want.insert(0, tok.bos_id)
    assert built.ids == want
    answer = list(fim_model.submit(PromptRequest(Kind.GENERATE, prompt="def add", suffix="return c",
                                                 options={"temperature": 0, "num_predict": 4})))[-1]
    assert answer.done and answer.stats.prompt_eval_count == len(want)


def test_insert_capability_follows_the_vocabulary(fim_model, tmp_path) -> None:
    meta = fim_model.prompts.metadata
    assert has_fim(meta) and "insert" in capabilities_of(meta, "{{ .Prompt }}")
    plain = tiny_model(tmp_path / "plain.gguf", vocab=True)
    plain_meta = GGUFFile(plain).metadata
    assert not has_fim(plain_meta) and "insert" not in capabilities_of(plain_meta, "{{ .Prompt }}")
    assert has_fim({"tokenizer.ggml.fim_pre_token_id": 1, "tokenizer.ggml.fim_suf_token_id": 2,
                    "tokenizer.ggml.fim_mid_token_id": 3})
    m = kettle.load(plain, num_ctx=64)
    try:
        with pytest.raises(CapabilityError, match="does not support insert"):
            build_prompt(m.prompts, m.n_ctx, PromptRequest(Kind.GENERATE, prompt="a", suffix="b"))
    finally:
        m.close()

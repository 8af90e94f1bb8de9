"""Validation of SamplingParams / LoadOptions, parse_options and coerce_parameter (tables)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from kettle.errors import InvalidParameter
from kettle.options import (
    LOAD_OPTION_NAMES, OPTION_NAMES, SAMPLING_OPTION_NAMES, LoadOptions, coerce_parameter,
    parse_options,
)
from kettle.sampling import Mirostat, SamplingParams

# (field, good values, bad values) for every SamplingParams field.
SAMPLING_TABLE = [
    ("temperature", [0, 0.0, 0.8, 2, 100.0, -1.0], [math.nan, math.inf, -math.inf, "0.8", True, None]),
    ("top_k", [0, 1, 40, 262144], [-1, 1.5, "40", True, None]),
    ("top_p", [0, 0.0, 0.5, 1, 1.0], [-0.01, 1.01, math.nan, "0.9", False]),
    ("min_p", [0.0, 0.05, 1.0], [-0.1, 1.5, math.inf]),
    ("typical_p", [0.0, 0.7, 1.0], [-0.5, 2.0, math.nan]),
    ("tfs_z", [0.0, 0.95, 1.0, 5.0], [-1.0, math.inf]),
    ("repeat_penalty", [0.5, 1.0, 1.1, 2], [0.0, -1.0, math.nan, "1.1"]),
    ("repeat_last_n", [-1, 0, 64, 4096], [-2, 64.5, False]),
    ("presence_penalty", [-2.0, 0.0, 1.5], [math.nan, math.inf, "1"]),
    ("frequency_penalty", [-2.0, 0.0, 1.5], [math.inf, None]),
    ("penalize_newline", [True, False, np.bool_(True)], [0, 1, "true", None]),
    ("mirostat", [0, 1, 2, Mirostat.V2], [3, -1, 1.5, True, "1"]),
    ("mirostat_tau", [0.0, 5.0, 10], [-0.1, math.nan]),
    ("mirostat_eta", [0.0, 0.1, 1.0], [-0.1, math.inf]),
    ("seed", [-1, 0, 42, 2**40, -2, -(2**63), 2**63 - 1], [1.5, "42", True, 2**63, -(2**63) - 1, 2**64]),
    ("stop", [(), ("a",), ["a", "b"], "\n\n"], [("",), "", [1], ("a", None), 5, {"a": 1}]),
    ("num_predict", [-2, -1, 0, 1, 128], [-3, 12.5, "128"]),
    ("num_keep", [-1, 0, 4, 100], [-2, "4"]),
    ("draft_num_predict", [0, 1, 8, 64], [-1, 65, 2.5, "8", True]),
    ("logprobs", [None, 0, 5, 20], [-1, 21, 2.5, True, "3"]),  # not an option: set from a request
    ("prompt_logprobs", [False], [True]),  # True needs logprobs
    ("shift", [True, False], []),  # not an option: a request's top-level ``shift``
]

LOAD_TABLE = [
    ("num_ctx", [0, 1, 2048, 131072], [-1, 1.5, "2048", True]),
    ("num_batch", [1, 512], [0, -1]),
    ("num_thread", [0, 4], [-1, 2.5]),
    ("num_gpu", [-1, 0, 99], [-2]),
    ("main_gpu", [0, 1], [-1]),
    ("use_mmap", [None, True, False], [1, "true"]),
    ("use_mlock", [True, False], [0, None]),
    ("numa", [False], ["no"]),
    ("low_vram", [True], [1]),
    ("f16_kv", [True], [1.0]),
    ("logits_all", [False], [0]),
    ("vocab_only", [False], [[]]),
    ("embedding_only", [True], ["yes"]),
]


def _cases(table, good):
    return [(name, value) for name, goods, bads in table for value in (goods if good else bads)]


def test_tables_cover_every_field():
    assert {row[0] for row in SAMPLING_TABLE} == {f.name for f in dataclasses.fields(SamplingParams)}
    assert {row[0] for row in LOAD_TABLE} == {f.name for f in dataclasses.fields(LoadOptions)}


@pytest.mark.parametrize("name,value", _cases(SAMPLING_TABLE, good=True))
def test_sampling_params_accept(name, value):
    params = SamplingParams(**{name: value})
    params.validate()
    if name == "stop":
        assert isinstance(params.stop, tuple)
        assert params.stop == ((value,) if isinstance(value, str) else tuple(value))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        assert getattr(params, name) == value


@pytest.mark.parametrize("name,value", _cases(SAMPLING_TABLE, good=False))
def test_sampling_params_reject(name, value):
    with pytest.raises(InvalidParameter) as info:
        SamplingParams(**{name: value})
    assert info.value.name == name
    assert info.value.reason


@pytest.mark.parametrize("name,value", _cases(LOAD_TABLE, good=True))
def test_load_options_accept(name, value):
    LoadOptions(**{name: value}).validate()


@pytest.mark.parametrize("name,value", _cases(LOAD_TABLE, good=False))
def test_load_options_reject(name, value):
    with pytest.raises(InvalidParameter) as info:
        LoadOptions(**{name: value})
    assert info.value.name == name


def test_defaults_are_ollamas():
    p = SamplingParams()
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.typical_p, p.tfs_z) == (0.8, 40, 0.9, 0.0, 1.0, 1.0)
    assert (p.repeat_penalty, p.repeat_last_n, p.presence_penalty, p.frequency_penalty) == (1.0, 64, 0.0, 0.0)
    assert (p.mirostat, p.mirostat_tau, p.mirostat_eta, p.penalize_newline) == (0, 5.0, 0.1, True)
    assert (p.seed, p.stop, p.num_predict, p.num_keep) == (-1, (), -1, 4)
    load = LoadOptions()
    assert (load.num_ctx, load.num_batch, load.num_thread) == (0, 512, 0)
    assert (load.num_gpu, load.use_mmap) == (-1, None)


def test_int_for_float_is_normalized_and_frozen():
    p = SamplingParams(temperature=1, top_p=1)
    assert type(p.temperature) is float and type(p.top_p) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.temperature = 0.5  # type: ignore[misc]
    with pytest.raises(InvalidParameter):
        dataclasses.replace(p, top_p=2.0)
    assert hash(LoadOptions(num_ctx=8)) == hash(LoadOptions(num_ctx=8))


def test_error_message_names_option_value_and_reason():
    with pytest.raises(InvalidParameter) as info:
        SamplingParams(top_p=1.5)
    assert (info.value.name, info.value.value) == ("top_p", 1.5)
    assert "between 0 and 1" in str(info.value)


# ---------------------------------------------------------------- parse_options


def test_parse_options_splits_load_and_request():
    load, sampling = parse_options({"num_ctx": 8192, "temperature": 0.2, "num_thread": 2, "stop": "###"})
    assert (load.num_ctx, load.num_thread) == (8192, 2)
    assert (sampling.temperature, sampling.stop) == (0.2, ("###",))


def test_parse_options_empty_and_none():
    assert parse_options(None) == (LoadOptions(), SamplingParams())
    assert parse_options({}, None) == (LoadOptions(), SamplingParams())


def test_parse_options_nulls_are_unset():
    # langchain_community sends every option, most of them null
    nulls = {name: None for name in OPTION_NAMES}
    assert parse_options({**nulls, "top_k": 7}, {"top_k": 3, "top_p": 0.5}) == (
        LoadOptions(), SamplingParams(top_k=7, top_p=0.5))


def test_parse_options_layering():
    base = {"temperature": 0.3, "stop": ["<|im_end|>", "<|im_start|>"], "num_ctx": 4096, "seed": 1}
    load, sampling = parse_options({"temperature": 0.9, "stop": ["END"]}, base)
    assert sampling.temperature == 0.9  # request over Modelfile
    assert sampling.stop == ("END",)  # replaced whole, not merged
    assert sampling.seed == 1 and load.num_ctx == 4096  # Modelfile over defaults
    assert sampling.top_k == 40  # defaults underneath


@pytest.mark.parametrize("options,name", [
    ({"top_k": True}, "top_k"),
    ({"temperature": "0.5"}, "temperature"),
    ({"num_ctx": "4096"}, "num_ctx"),
    ({"num_ctx": 4096.5}, "num_ctx"),
    ({"stop": [1, 2]}, "stop"),
    ({"stop": 7}, "stop"),
    ({"penalize_newline": "false"}, "penalize_newline"),
    ({"top_p": 7}, "top_p"),
])
def test_parse_options_strict_types(options, name):
    with pytest.raises(InvalidParameter) as info:
        parse_options(options)
    assert info.value.name == name


def test_parse_options_accepts_json_numbers():
    load, sampling = parse_options({"num_ctx": 4096.0, "top_k": 40.0, "temperature": 1, "seed": 7})
    assert (load.num_ctx, sampling.top_k) == (4096, 40)
    assert type(load.num_ctx) is int and type(sampling.top_k) is int and type(sampling.temperature) is float


@pytest.mark.parametrize("name,expected", [
    ("temprature", "temperature"), ("top-k", "top_k"), ("numctx", "num_ctx"), ("stops", "stop"),
])
def test_parse_options_unknown_name_suggests(name, expected):
    with pytest.raises(InvalidParameter) as info:
        parse_options({name: 1})
    assert info.value.name == name
    assert "unknown option" in info.value.reason and repr(expected) in info.value.reason


def test_parse_options_unknown_name_without_match():
    with pytest.raises(InvalidParameter) as info:
        parse_options({"zzzzzz": 1})
    assert info.value.reason == "unknown option"


def test_parse_options_unknown_name_in_base():
    with pytest.raises(InvalidParameter):
        parse_options({}, {"bogus_option": 1})


def test_parse_options_rejects_non_mapping():
    with pytest.raises(InvalidParameter) as info:
        parse_options(["temperature"])  # type: ignore[arg-type]
    assert info.value.name == "options"


def test_every_ollama_python_option_is_accepted():
    ollama = pytest.importorskip("ollama")
    names = set(ollama.Options.model_fields)
    assert names <= OPTION_NAMES, sorted(names - OPTION_NAMES)
    assert LOAD_OPTION_NAMES.isdisjoint(SAMPLING_OPTION_NAMES)


def test_ollama_python_options_object_round_trips():
    ollama = pytest.importorskip("ollama")
    sent = ollama.Options(temperature=0.1, top_k=5, stop=["x"], num_ctx=1024).model_dump()
    load, sampling = parse_options(sent)  # the unset fields arrive as None
    assert (sampling.temperature, sampling.top_k, sampling.stop, load.num_ctx) == (0.1, 5, ("x",), 1024)


# ---------------------------------------------------------------- coerce_parameter


@pytest.mark.parametrize("name,text,expected", [
    ("temperature", "0.7", 0.7),
    ("temperature", " 1 ", 1.0),
    ("temperature", "1e-1", 0.1),
    ("top_k", "40", 40),
    ("top_k", "+5", 5),
    ("seed", "-1", -1),
    ("num_ctx", "8192", 8192),
    ("penalize_newline", "false", False),
    ("penalize_newline", "TRUE", True),
    ("use_mmap", "0", False),
    ("stop", "<|im_end|>", "<|im_end|>"),
    ("stop", " ### ", " ### "),
    ("mirostat", "2", 2),
])
def test_coerce_parameter(name, text, expected):
    value = coerce_parameter(name, text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("name,text", [
    ("top_k", "40.0"), ("top_k", "forty"), ("top_k", ""), ("temperature", "nan"),
    ("temperature", "inf"), ("temperature", "0x1p3"), ("temperature", "1_0"), ("top_p", "1.5"),
    ("mirostat", "3"), ("penalize_newline", "yes"), ("stop", ""), ("num_ctx", "-1"),
    ("tempreature", "0.5"),
])
def test_coerce_parameter_rejects(name, text):
    with pytest.raises(InvalidParameter) as info:
        coerce_parameter(name, text)
    assert info.value.name == name


def test_coerced_parameters_feed_parse_options():
    base = {"temperature": coerce_parameter("temperature", "0.1"),
            "stop": [coerce_parameter("stop", "a"), coerce_parameter("stop", "b")]}
    assert parse_options(None, base)[1] == SamplingParams(temperature=0.1, stop=("a", "b"))


# ---------------------------------------------------------------- derived values


def test_context_length(monkeypatch):
    monkeypatch.setenv("KETTLE_CONTEXT_LENGTH", "3000")
    assert LoadOptions().context_length() == 3000
    assert LoadOptions().context_length(trained=2048) == 2048
    assert LoadOptions(num_ctx=512).context_length(trained=2048) == 512
    assert LoadOptions(num_ctx=8192).context_length(trained=2048) == 2048


@pytest.mark.parametrize("num_predict,expected", [(-1, 1000), (0, 1000), (50, 50), (5000, 1000), (-2, 70)])
def test_token_limit(num_predict, expected):
    assert SamplingParams(num_predict=num_predict).token_limit(num_ctx=100, prompt_tokens=30) == expected


def test_greedy_property():
    assert SamplingParams(temperature=0).greedy and SamplingParams(temperature=-1).greedy
    assert not SamplingParams(temperature=0.01).greedy


def test_negative_seeds_other_than_minus_one_are_fixed_seeds() -> None:
    """OpenAI accepts any 64-bit seed; only -1 means random (a fresh seed per request)."""
    from kettle.sampling.sampler import Sampler

    logits = np.linspace(0.0, 1.0, 64).astype(np.float32)  # (n_vocab,)

    def draws(seed: int) -> list[int]:
        sampler = Sampler(SamplingParams(seed=seed, temperature=1.0), vocab_size=64)
        return [sampler.sample(logits.copy()) for _ in range(20)]

    assert draws(-2) == draws(-2) and draws(-(2**63)) == draws(-(2**63))
    assert draws(-2) != draws(-3)

"""Model names: ollama's grammar, defaults, lengths and character sets (kettle/store/names.py)."""

from __future__ import annotations

import pytest

from kettle.errors import StoreError
from kettle.store.names import DEFAULT_HOST, ModelName, parse_name, valid_name

D = DEFAULT_HOST

# text -> (host, namespace, model, tag, display)
VALID = [
    ("smollm2", (D, "library", "smollm2", "latest"), "smollm2:latest"),
    ("smollm2:135m", (D, "library", "smollm2", "135m"), "smollm2:135m"),
    ("gemma3:270m", (D, "library", "gemma3", "270m"), "gemma3:270m"),
    ("me/mario", (D, "me", "mario", "latest"), "me/mario:latest"),
    ("me/mario:v1.2", (D, "me", "mario", "v1.2"), "me/mario:v1.2"),
    ("example.com/me/mario:v1", ("example.com", "me", "mario", "v1"), "example.com/me/mario:v1"),
    ("localhost:5000/me/mario:v1", ("localhost:5000", "me", "mario", "v1"), "localhost:5000/me/mario:v1"),
    ("https://example.com/me/mario", ("example.com", "me", "mario", "latest"), "example.com/me/mario:latest"),
    ("hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M", ("hf.co", "bartowski", "Llama-3.2-1B-GGUF", "Q4_K_M"), "hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M"),
    ("model.gguf", (D, "library", "model.gguf", "latest"), "model.gguf:latest"),
    ("_x/y_z:_t", (D, "_x", "y_z", "_t"), "_x/y_z:_t"),
    (f"{D}/library/smollm2:latest", (D, "library", "smollm2", "latest"), "smollm2:latest"),
    ("REGISTRY.ollama.ai/Library/Smol:Latest", ("REGISTRY.ollama.ai", "Library", "Smol", "Latest"), "Smol:Latest"),
    ("m" * 80, (D, "library", "m" * 80, "latest"), "m" * 80 + ":latest"),
    ("n" * 80 + "/m:" + "t" * 80, (D, "n" * 80, "m", "t" * 80), "n" * 80 + "/m:" + "t" * 80),
    ("h" * 350 + "/n/m", ("h" * 350, "n", "m", "latest"), "h" * 350 + "/n/m:latest"),
]

# text -> the part the problem names
INVALID = [
    ("", "model"),
    ("../x", "namespace"),
    ("..", "model"),
    ("../../etc/passwd", "host"),
    ("model:", "tag"),
    (":tag", "model"),
    ("/model", "namespace"),
    ("ns/", "model"),
    ("a/b/c/d", "host"),
    ("my model", "model"),
    ("mödel", "model"),
    ("ns.dot/model", "namespace"),
    ("-model", "model"),
    ("model:-tag", "tag"),
    ("x\x00y", "model"),
    ("model@sha256-abc", "model"),
    ("a:b:c", "model"),
    ("model:ta/g", "namespace"),
    ("m" * 81, "model"),
    ("m:" + "t" * 81, "tag"),
    ("n" * 81 + "/m", "namespace"),
    ("h" * 351 + "/n/m", "host"),
    ("model:t*g", "tag"),
    ("C:\\models\\x", "tag"),
]


@pytest.mark.parametrize(("text", "parts", "display"), VALID, ids=[v[0][:40] for v in VALID])
def test_valid_names(text: str, parts: tuple[str, str, str, str], display: str) -> None:
    name = parse_name(text)
    assert (name.host, name.namespace, name.model, name.tag) == parts
    assert name.is_valid() and name.problem() is None
    assert name.display() == display
    assert name.filepath_parts() == parts
    assert parse_name(str(name)) == name  # the full form parses back to itself


@pytest.mark.parametrize(("text", "part"), INVALID, ids=[repr(v[0][:30]) for v in INVALID])
def test_invalid_names_never_raise_on_parse_but_never_give_a_path(text: str, part: str) -> None:
    name = parse_name(text)  # total: no exception
    assert not name.is_valid()
    assert part in (name.problem() or "")
    with pytest.raises(StoreError, match="invalid model name"):
        name.filepath_parts()
    with pytest.raises(StoreError, match=part):
        valid_name(text)


def test_names_compare_case_insensitively_but_keep_their_case() -> None:
    a, b = parse_name("SmolLM2:Latest"), parse_name("smollm2")
    assert a.same_as(b) and a.key() == b.key()
    assert a != b and a.model == "SmolLM2"


def test_missing_parts_are_not_filled_by_defaults() -> None:
    assert parse_name("model:").tag != "latest"
    assert parse_name("/model").namespace != "library"


def test_valid_name_accepts_a_parsed_name() -> None:
    name = ModelName(DEFAULT_HOST, "library", "x", "latest")
    assert valid_name(name) is name
    with pytest.raises(StoreError):
        valid_name(ModelName(DEFAULT_HOST, "library", "..", "latest"))

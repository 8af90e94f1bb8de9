"""Where a name's registry is: hosts, hf.co, http://, and who gets a token."""

from __future__ import annotations

import pytest

from kettle.errors import RegistryError, StoreError
from kettle.store import parse_name
from kettle.store.names import is_hugging_face, scheme_of
from kettle.store.pull import pull_model, registry_name
from kettle.store.registry import RegistryClient, json_depth, parse_challenge


@pytest.mark.parametrize("text, url, tag", [
    ("llama3.2", "https://registry.ollama.ai/v2/library/llama3.2", "latest"),
    ("me/mario:v2", "https://registry.ollama.ai/v2/me/mario", "v2"),
    ("192.168.1.20:11434/library/mymodel", "https://192.168.1.20:11434/v2/library/mymodel", "latest"),
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "https://hf.co/v2/bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"),
    ("huggingface.co/unsloth/gemma-3-1b-it-GGUF", "https://huggingface.co/v2/unsloth/gemma-3-1b-it-GGUF", "latest"),
])
def test_registry_urls(text: str, url: str, tag: str) -> None:
    with RegistryClient(parse_name(text)) as client:
        assert client.repo_url == url and client.name.tag == tag


def test_insecure_is_plain_http_and_http_names_need_it() -> None:
    with RegistryClient(parse_name("192.168.1.20:11434/library/m"), insecure=True) as client:
        assert client.repo_url == "http://192.168.1.20:11434/v2/library/m"
    assert scheme_of("http://host:1/ns/m") == "http" and scheme_of("https://h/ns/m") == "https"
    assert scheme_of("ns/m") is None
    with pytest.raises(RegistryError, match="--insecure"):
        registry_name("http://host:1/ns/m", insecure=False)
    assert registry_name("http://host:1/ns/m", insecure=True)[0] == parse_name("host:1/ns/m")


def test_hf_token_goes_to_hugging_face_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert is_hugging_face(parse_name("hf.co/u/r")) and is_hugging_face(parse_name("HuggingFace.co/u/r"))
    with RegistryClient(parse_name("hf.co/u/r:Q8_0")) as hf:
        assert hf._token == "hf_secret" and hf.host == "hf.co"
    with RegistryClient(parse_name("registry.ollama.ai/u/r")) as other:
        assert other._token is None


def test_invalid_names_build_no_url() -> None:
    for text in ("../x", "a/../../b", "ns/model:", "host/ns/m:t/../.."):
        with pytest.raises(StoreError, match="invalid model name"):
            pull_model(None, text)  # type: ignore[arg-type]  # refused before the store is touched


def test_challenges_and_depth() -> None:
    c = parse_challenge('Bearer realm="https://r.example/token",service="r.example",scope="repository:a/b:pull"')
    assert c is not None and c.realm == "https://r.example/token" and c.scope == "repository:a/b:pull"
    assert parse_challenge('Basic realm="x"') is None and parse_challenge("Bearer service=x") is None
    assert json_depth(b'{"a": [1, {"b": "[[[["}]}') == 3

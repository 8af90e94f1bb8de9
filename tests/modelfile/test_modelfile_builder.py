"""Creating models from Modelfiles, and `show --modelfile` text that builds them again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kettle.errors import ModelfileError, StoreError
from kettle.modelfile import create_model, parse, to_modelfile
from kettle.store import MediaType, Store

from .conftest import snapshot, write_tiny_gguf

MARIO = """FROM smollm2
PARAMETER temperature 1
PARAMETER num_ctx 4096
SYSTEM You are Mario from super mario bros, acting as an assistant.
"""
SMOLLM2 = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_the_seed_example_creates_mario(store: Store, tmp_path: Path) -> None:
    statuses: list[str] = []
    digest = create_model(store, "mario", MARIO, tmp_path, progress=statuses.append)  # pulls smollm2 first
    assert statuses[-1] == "success" and "writing manifest" in statuses
    mario = store.resolve("mario")
    assert store.entry("mario").digest == digest
    assert mario.model_digest == SMOLLM2
    assert mario.system == "You are Mario from super mario bros, acting as an assistant."
    assert mario.params == {"temperature": 1.0, "num_ctx": 4096, "stop": ["<|im_start|>", "<|im_end|>"]}
    assert mario.details.parent_model == "smollm2:latest" and mario.details.family == "llama"
    assert {e.name.display() for e in store.list_models()} == {"mario:latest", "smollm2:latest"}
    assert sum(1 for p in (store.root / "blobs").iterdir() if p.stat().st_size > 1 << 20) == 1  # one GGUF


def test_a_child_inherits_what_it_does_not_override(smol_store: Store, tmp_path: Path) -> None:
    create_model(smol_store, "mario", MARIO + "MESSAGE user hi\nLICENSE mario license\n", tmp_path)
    create_model(smol_store, "luigi", "FROM mario\nPARAMETER top_k 10\nPARAMETER stop END\nLICENSE luigi license\n", tmp_path)
    luigi = smol_store.resolve("luigi")
    assert luigi.params == {"temperature": 1.0, "num_ctx": 4096, "top_k": 10, "stop": ["END"]}
    assert luigi.system.startswith("You are Mario")
    assert luigi.messages == ({"role": "user", "content": "hi"},)
    assert luigi.license[-2:] == ("mario license", "luigi license")
    assert luigi.details.parent_model == "mario:latest"

    create_model(smol_store, "quiet", 'FROM luigi\nSYSTEM ""\nMESSAGE assistant ok\n', tmp_path)
    quiet = smol_store.resolve("quiet")
    assert quiet.system is None  # an empty SYSTEM removes it
    assert quiet.messages == ({"role": "assistant", "content": "ok"},)  # MESSAGEs replace


def test_from_a_gguf_path_a_digest_or_an_absolute_path(store: Store, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    gguf = write_tiny_gguf(tmp_path / "sub" / "tiny.gguf")
    create_model(store, "tiny", "FROM ./sub/tiny.gguf\nSYSTEM hi\n", tmp_path)
    tiny = store.resolve("tiny")
    assert tiny.model_path.read_bytes() == gguf.read_bytes()
    assert tiny.details.family == "llama" and tiny.details.parameter_size == "128"
    create_model(store, "by-digest", f"FROM {tiny.model_digest}\n", tmp_path)
    create_model(store, "by-abs", f'FROM "{gguf}"\n', Path("/"))
    for name in ("by-digest", "by-abs"):
        assert store.resolve(name).model_digest == tiny.model_digest
    assert len(list((store.root / "blobs").glob("sha256-*"))) == len({
        layer.digest for e in store.list_models() for layer in store.read_manifest(e.name).blobs()
    })


def from_targets(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "notgguf.gguf").write_bytes(b"PK\x03\x04 a zip, not a model")
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "adir.gguf").mkdir()
    os.mkfifo(tmp_path / "fifo.gguf")
    os.symlink(tmp_path / "missing-target", tmp_path / "dangling.gguf")
    return {
        "missing": "./missing.gguf",
        "directory": "./adir.gguf",
        "device": "/dev/null",
        "fifo": "./fifo.gguf",
        "not gguf": "./notgguf.gguf",
        "empty": "./empty.gguf",
        "dangling link": "./dangling.gguf",
        "outside file": "/etc/passwd",
        "unknown name": "nosuchmodel:7b",
        "home": "~/nothing-here.gguf",
    }


def test_from_failures_all_look_the_same_and_write_nothing(store: Store, tmp_path: Path) -> None:
    before = snapshot(store)
    messages = set()
    for label, arg in from_targets(tmp_path).items():
        with pytest.raises(ModelfileError) as info:
            create_model(store, "x", f"# {label}\nFROM {arg}\n", tmp_path)
        assert info.value.line == 2, label
        messages.add(str(info.value).replace(repr(arg), "ARG"))
        assert snapshot(store) == before, label
    assert messages == {"line 2: FROM ARG: no model of that name in the store and no GGUF model file at that path"}


def test_from_a_corrupt_gguf_or_a_missing_digest(store: Store, tmp_path: Path) -> None:
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(ModelfileError, match="FROM './bad.gguf'"):
        create_model(store, "x", "FROM ./bad.gguf", tmp_path)
    with pytest.raises(ModelfileError, match="no GGUF blob with that digest"):
        create_model(store, "x", "FROM sha256:" + "0" * 64, tmp_path)
    assert snapshot(store) == []


ADAPTERS = [
    ("../outside.gguf", "leaves the Modelfile's directory"),
    ("sub/../../outside.gguf", "leaves the Modelfile's directory"),
    ("link-out.gguf", "leaves the Modelfile's directory"),
    ("/abs/adapter.gguf", "must be relative"),
    ("~/adapter.gguf", "must be relative"),
    ("missing.gguf", "not a GGUF adapter file"),
    ("text.gguf", "not a GGUF adapter file"),
    ("sha256:" + "1" * 64, "no GGUF blob with that digest"),
]


@pytest.mark.parametrize(("arg", "fragment"), ADAPTERS)
def test_adapter_paths_stay_inside_the_modelfile_directory(store: Store, tmp_path: Path, arg: str, fragment: str) -> None:
    base = tmp_path / "project"
    (base / "sub").mkdir(parents=True)
    write_tiny_gguf(tmp_path / "outside.gguf")
    write_tiny_gguf(base / "model.gguf")
    os.symlink(tmp_path / "outside.gguf", base / "link-out.gguf")
    (base / "text.gguf").write_text("not an adapter")
    before = snapshot(store)
    with pytest.raises(ModelfileError, match=fragment) as info:
        create_model(store, "x", f"FROM model.gguf\n\nADAPTER {arg}\n", base)
    assert info.value.line == 3
    assert snapshot(store) == before


def test_adapters_are_stored(store: Store, tmp_path: Path) -> None:
    from tests.models.lora.case import write_case

    base, adapter = write_case(tmp_path)
    create_model(store, "withlora", f"FROM {base.name}\nADAPTER {adapter.name}\n", tmp_path)
    model = store.resolve("withlora")
    assert [p.read_bytes() for p in model.adapters] == [adapter.read_bytes()]
    assert [layer.media_type for layer in model.manifest.layers] == [MediaType.MODEL, MediaType.ADAPTER]


@pytest.mark.parametrize(("text", "error"), [
    ("FROM model.gguf\nPARAMETER temperature hot\n", ModelfileError),
    ("FROM model.gguf\nBOGUS\n", ModelfileError),
    ("FROM model.gguf\nADAPTER ../x.gguf\n", ModelfileError),
])
def test_failed_creates_write_nothing(store: Store, tmp_path: Path, text: str, error: type) -> None:
    write_tiny_gguf(tmp_path / "model.gguf")
    with pytest.raises(error):
        create_model(store, "x", text, tmp_path)
    assert snapshot(store) == []


@pytest.mark.parametrize("name", ["../x", "", "a/b/c/d", "bad name"])
def test_invalid_target_names_write_nothing(store: Store, tmp_path: Path, name: str) -> None:
    write_tiny_gguf(tmp_path / "model.gguf")
    with pytest.raises(StoreError, match="invalid model name"):
        create_model(store, name, "FROM model.gguf\n", tmp_path)
    assert snapshot(store) == []


def same_model(a, b) -> None:
    assert (b.model_digest, b.params, b.template, b.system, b.license, b.messages) == (
        a.model_digest, a.params, a.template, a.system, a.license, a.messages)
    assert [p.name for p in b.adapters] == [p.name for p in a.adapters]


def test_show_modelfile_builds_the_same_model(store: Store, tmp_path: Path) -> None:
    from tests.models.lora.case import write_case

    base, adapter = write_case(tmp_path)
    base.rename(tmp_path / "model.gguf")
    adapter.rename(tmp_path / "lora.gguf")
    create_model(store, "rich", (
        'FROM model.gguf\nSYSTEM """Be "helpful".\n  Always."""\nPARAMETER stop "<|im_end|>"\n'
        "PARAMETER stop </s>\nPARAMETER top_p 0.95\nPARAMETER seed -1\nPARAMETER use_mmap false\n"
        "ADAPTER lora.gguf\nLICENSE \"\"\"line one\nline two\"\"\"\nLICENSE MIT\n"
        "MESSAGE user what's up?\nMESSAGE assistant \" not much \"\n"
    ), tmp_path)
    rich = store.resolve("rich")
    text = to_modelfile(rich, "rich")
    assert text.startswith('# Modelfile generated by "kettle show"') and "# FROM rich" in text
    assert f"FROM {rich.model_path}" in text
    assert parse(text).base.value == str(rich.model_path)
    before = len(list((store.root / "blobs").iterdir()))
    create_model(store, "again", text, Path("/nonexistent"))
    same_model(rich, store.resolve("again"))
    assert len(list((store.root / "blobs").iterdir())) == before  # every layer was there already
    assert store.entry("again").digest == store.entry("rich").digest  # the very same manifest


def test_show_modelfile_of_the_seed_example(smol_store: Store, tmp_path: Path) -> None:
    create_model(smol_store, "mario", MARIO, tmp_path)
    mario = smol_store.resolve("mario")
    create_model(smol_store, "mario2", to_modelfile(mario), tmp_path)
    same_model(mario, smol_store.resolve("mario2"))


@pytest.mark.usefixtures("needs_templates")
def test_show_modelfile_round_trips_a_template(store: Store, tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "model.gguf")
    template = '{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n'
    create_model(store, "t", f'FROM model.gguf\nTEMPLATE """{template}"""\n', tmp_path)
    t = store.resolve("t")
    assert t.template == template
    create_model(store, "t2", to_modelfile(t), tmp_path)
    same_model(t, store.resolve("t2"))


@pytest.mark.usefixtures("needs_templates")
def test_a_broken_template_writes_nothing(store: Store, tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "model.gguf")
    with pytest.raises(ModelfileError, match="TEMPLATE") as info:
        create_model(store, "t", 'FROM model.gguf\nTEMPLATE """ok\n{{ if .System }}"""\n', tmp_path)
    assert info.value.line is not None and info.value.line >= 2
    assert snapshot(store) == []

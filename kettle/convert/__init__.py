"""``kettle convert HF_DIR``: a Hugging Face checkpoint folder -> one GGUF file.

    from kettle.convert import convert
    path = convert("all-MiniLM-L6-v2/", outtype="f16")   # -> all-MiniLM-L6-v2-F16.gguf beside the folder

``config.json``'s ``architectures`` picks the family module (one per family,
``ARCHITECTURES``); the module adds the family's metadata and tokenizer to a
``gguf.GGUFWriter`` and plans the tensors, which ``writer.write_gguf`` streams
out one at a time. Shared parts: ``checkpoint`` (bounded, lazy reading of the
folder), ``vocab`` (tokenizer metadata), ``writer`` (output types).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from kettle.convert.checkpoint import Checkpoint
from kettle.convert.writer import OutType, file_type, write_gguf
from kettle.errors import ConvertError

__all__ = ["ARCHITECTURES", "OutType", "convert"]

# config.json "architectures" entry -> the module that converts it
ARCHITECTURES: dict[str, str] = {
    "BertModel": "kettle.convert.bert",
    "BertForMaskedLM": "kettle.convert.bert",
    "LlamaForCausalLM": "kettle.convert.llama",
    "MistralForCausalLM": "kettle.convert.llama",
    "Qwen2ForCausalLM": "kettle.convert.qwen2",
    "Qwen3ForCausalLM": "kettle.convert.qwen3",
    "Gemma2ForCausalLM": "kettle.convert.gemma2",
    "Gemma3ForCausalLM": "kettle.convert.gemma3",
    "Phi3ForCausalLM": "kettle.convert.phi3",
}


def _family(ckpt: Checkpoint):  # noqa: ANN202 - a module
    names = ckpt.config.get("architectures")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConvertError(f"{ckpt.path / 'config.json'}: no 'architectures' list naming the model class")
    for name in names:
        if name in ARCHITECTURES:
            return importlib.import_module(ARCHITECTURES[name])
    raise ConvertError(f"{ckpt.path}: architecture {names[0]!r} cannot be converted "
                       f"(supported: {', '.join(sorted(ARCHITECTURES))})")


def default_output(hf_dir: Path, outtype: OutType) -> Path:
    folder = hf_dir.resolve()
    return folder.parent / f"{folder.name}-{outtype.value.upper()}.gguf"


def convert(hf_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
            outtype: str | OutType = OutType.F16, progress: Callable[[str], None] | None = None) -> Path:
    """Convert the checkpoint in ``hf_dir``; returns the GGUF's path (``out``, or
    ``<folder>-<TYPE>.gguf`` beside the folder). Raises ``ConvertError``."""
    import gguf

    try:
        kind = outtype if isinstance(outtype, OutType) else OutType(str(outtype).lower())
    except ValueError:
        raise ConvertError(f"--outtype {outtype!r}: expected one of {', '.join(t.value for t in OutType)}") from None
    ckpt = Checkpoint(hf_dir)
    family = _family(ckpt)
    target = Path(out) if out is not None else default_output(ckpt.path, kind)
    if target.is_dir():
        raise ConvertError(f"{target}: is a folder; give the output file's name")
    writer = gguf.GGUFWriter(path=None, arch=family.ARCH)
    name = ckpt.config.get("_name_or_path")
    writer.add_name(name.rsplit("/", 1)[-1] if isinstance(name, str) and name else ckpt.path.resolve().name)
    writer.add_file_type(file_type(kind))
    plans = family.prepare(ckpt, writer)
    write_gguf(writer, target, plans, kind, progress)
    return target


def convert_to_file(hf_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None,
                    outtype: str | OutType = OutType.F16) -> BinaryIO:
    """The checkpoint converted into a temporary GGUF at ``path`` (default: a new file in the
    system's temporary directory), opened for reading and unlinked at once, so nothing remains
    once it is closed (``kettle create`` with ``FROM ./hf-dir``, in-process or for a server)."""
    if path is None:
        fd, name = tempfile.mkstemp(suffix=".gguf")
        os.close(fd)
        path = name
    try:
        convert(hf_dir, path, outtype=outtype)
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    finally:
        Path(path).unlink(missing_ok=True)

"""The rules for the files a Modelfile names, shared by every path that creates a model.

``kettle create`` in-process (``builder.create_model``) and against a server
(``cli/http_backend``, which uploads files as blobs before ``/api/create``)
both open a FROM or ADAPTER file only through these functions, before
reading, hashing or sending a byte of it:

* a FROM path is relative to the Modelfile's directory, absolute, or ``~``;
  it must be a regular file that starts with the GGUF magic, or a Hugging
  Face checkpoint folder (``checkpoint_dir``: converted first). Every way of
  not being one (missing, a directory, a device, a FIFO, a dangling link,
  a text file) looks the same to the caller (``open_model_file`` answers
  None), so an error can say nothing about which files exist.
* an ADAPTER path is relative to the Modelfile's directory and stays inside
  it once symlinks are resolved (``..``, an absolute path, ``~`` and a link
  out are refused); it must be a regular GGUF file too. The real path of
  the descriptor actually opened is checked again, so a link swapped in
  between the check and the open is refused as well.

Files are opened without blocking (a FIFO cannot hang us) and their type is
checked on the open descriptor, so the file checked is the file read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from kettle.errors import KettleError, ModelfileError
from kettle.gguf.constants import MAGIC
from kettle.modelfile.parser import Command
from kettle.store.blobs import open_regular_file

# The one answer for a FROM that is not a usable model, whatever the reason.
FROM_NOT_FOUND = "no model of that name in the store and no GGUF model file at that path"


def open_gguf(path: Path) -> BinaryIO | None:
    """``path`` opened (at offset 0) when it is a regular file starting with the GGUF magic, else None."""
    f = open_regular_file(path)
    if f is None:
        return None
    try:
        if f.read(len(MAGIC)) == MAGIC:
            f.seek(0)
            return f
    except OSError:
        pass
    f.close()
    return None


def model_path(arg: str, base_dir: Path) -> Path:
    """Where a FROM path argument points: ``~`` expanded, relative to ``base_dir``."""
    path = Path(arg).expanduser()
    return path if path.is_absolute() else base_dir / path


def open_model_file(arg: str, base_dir: Path) -> BinaryIO | None:
    """The FROM file ``arg`` opened, or None when it is not a regular GGUF file (for any reason)."""
    try:
        return open_gguf(model_path(arg, base_dir))
    except (OSError, RuntimeError, ValueError):  # expanduser of an unknown ~user, NUL bytes
        return None


def checkpoint_dir(arg: str, base_dir: Path) -> Path | None:
    """The FROM argument as a Hugging Face checkpoint folder (one with a config.json), else None
    (ollama's ``FROM ./safetensors-dir``; ``kettle convert`` reads it with its own bounds)."""
    try:
        path = model_path(arg, base_dir)
        return path if path.is_dir() and (path / "config.json").is_file() else None
    except (OSError, RuntimeError, ValueError):
        return None


def adapter_dir(command: Command, base_dir: Path) -> Path | None:
    """The ADAPTER argument as a PEFT adapter folder (one with an adapter_config.json) inside
    the Modelfile's directory, else None; converted to a GGUF adapter on create."""
    arg = command.value
    if Path(arg).is_absolute() or arg.startswith("~"):
        return None  # open_adapter_file says why
    try:
        root = base_dir.resolve()
        full = (root / arg).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not full.is_relative_to(root) or not (full.is_dir() and (full / "adapter_config.json").is_file()):
        return None
    return full


def convert_checkpoint(folder: Path, command: Command, temp_path: Path | None = None) -> BinaryIO:
    """The checkpoint ``folder`` converted to an F16 GGUF, as an open anonymous file (see
    ``kettle.convert.convert_to_file``); ModelfileError (with the line) when it cannot be."""
    from kettle.convert import convert_to_file

    try:
        return convert_to_file(folder, temp_path)
    except KettleError as e:
        raise ModelfileError(f"FROM {command.value!r}: {e}", command.line) from None


def _real_path_of(f: BinaryIO) -> Path | None:
    """The path the kernel has for an open file (Linux ``/proc``), or None where unknown."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{f.fileno()}"))
    except OSError:
        return None


def open_adapter_file(command: Command, base_dir: Path) -> BinaryIO:
    """The ADAPTER file ``command`` names, opened; ModelfileError (with the line) when the rules refuse it."""
    arg = command.value
    if Path(arg).is_absolute() or arg.startswith("~"):
        raise ModelfileError(f"ADAPTER {arg!r}: the path must be relative to the Modelfile's directory", command.line)
    try:
        root = base_dir.resolve()
        full = (root / arg).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, NUL bytes
        raise ModelfileError(f"ADAPTER {arg!r}: not a GGUF adapter file", command.line) from None
    if not full.is_relative_to(root):
        raise ModelfileError(f"ADAPTER {arg!r}: the path leaves the Modelfile's directory", command.line)
    f = open_gguf(full)
    if f is None:
        raise ModelfileError(f"ADAPTER {arg!r}: not a GGUF adapter file", command.line)
    real = _real_path_of(f)
    if real is not None and not real.is_relative_to(root):
        f.close()
        raise ModelfileError(f"ADAPTER {arg!r}: the path leaves the Modelfile's directory", command.line)
    return f

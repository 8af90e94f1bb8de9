"""A Hugging Face checkpoint folder, read lazily and with every input bounded.

``Checkpoint(path)`` reads ``config.json`` and finds the weights: one
``model.safetensors``, or the shards ``model.safetensors.index.json`` names
(each a plain file name inside the folder: no ``..``, no separators, no symlink
that leads out). Tensors are read one at a time through the ``safetensors``
package (memory-mapped), so converting never holds the model twice.
``json_file`` reads any other JSON file of the folder (tokenizer.json, ...)
the same bounded way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kettle.errors import ConvertError

MAX_JSON_BYTES = 64 << 20  # tokenizer.json of a 256k vocabulary is ~20 MB
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class Checkpoint:
    """config.json + the safetensors weights of one folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConvertError(f"{self.path}: not a folder (convert takes a Hugging Face checkpoint folder)")
        self.root = self.path.resolve()
        config = self.json_file("config.json")
        if config is None:
            raise ConvertError(f"{self.path}: no config.json (not a Hugging Face checkpoint folder?)")
        if not isinstance(config, dict):
            raise ConvertError(f"{self.path / 'config.json'}: expected a JSON object")
        self.config: dict[str, Any] = config
        self._files = self._weight_files()
        self._where: dict[str, Path] = {}
        from safetensors import safe_open

        self._open = safe_open
        for file in self._files:
            with safe_open(str(file), framework="numpy") as f:
                for name in f.keys():
                    if name in self._where:
                        raise ConvertError(f"{file}: tensor {name!r} is also in {self._where[name].name}")
                    self._where[name] = file

    # -- files ----------------------------------------------------------------------

    def file(self, name: str) -> Path | None:
        """``name`` (a plain file name or ``dir/name``) inside the folder, or None if absent.
        A name that would leave the folder is a ``ConvertError``."""
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or any(p in ("..", "") for p in parts):
            raise ConvertError(f"{self.path}: refusing the file name {name!r} (it leads out of the folder)")
        candidate = self.path.joinpath(*parts)
        if not candidate.exists():
            return None
        real = candidate.resolve()
        if self.root not in real.parents:
            raise ConvertError(f"{candidate}: refusing a link that leads out of the checkpoint folder")
        if not real.is_file():
            raise ConvertError(f"{candidate}: not a regular file")
        return candidate

    def json_file(self, name: str) -> Any:
        """The parsed JSON of ``name`` in the folder, None if there is no such file."""
        path = self.file(name)
        if path is None:
            return None
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ConvertError(f"{path}: {size} bytes is more than the {MAX_JSON_BYTES} a JSON file may have")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ConvertError(f"{path}: not valid JSON ({e})") from None

    def _weight_files(self) -> list[Path]:
        index = self.json_file(INDEX_FILE)
        if index is None:
            single = self.file(WEIGHTS_FILE)
            if single is None:
                raise ConvertError(f"{self.path}: no {WEIGHTS_FILE} or {INDEX_FILE} (only safetensors weights "
                                   "are read; convert a PyTorch .bin checkpoint with transformers first)")
            return [single]
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ConvertError(f"{self.path / INDEX_FILE}: expected a 'weight_map' of tensor name -> file name")
        files = []
        for name in sorted(set(weight_map.values())):
            if Path(name).name != name:
                raise ConvertError(f"{self.path / INDEX_FILE}: shard {name!r} is not a plain file name")
            path = self.file(name)
            if path is None:
                raise ConvertError(f"{self.path}: shard {name!r} named by {INDEX_FILE} is missing")
            files.append(path)
        return files

    # -- tensors ----------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        with self._open(str(self._where[name]), framework="numpy") as f:
            return tuple(f.get_slice(name).get_shape())

    def tensor(self, name: str) -> np.ndarray:
        """One tensor as float32 (read now, from the memory-mapped file)."""
        file = self._where[name]
        try:
            with self._open(str(file), framework="numpy") as f:
                value = f.get_tensor(name)
        except (TypeError, ValueError) as e:  # a dtype numpy lacks (bfloat16, float8)
            raise ConvertError(f"{file}: tensor {name!r}: {e}") from None
        if value.dtype.kind != "f":
            raise ConvertError(f"{file}: tensor {name!r} is {value.dtype}, expected floating point weights")
        return np.ascontiguousarray(value, dtype=np.float32)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self._where:
            yield name, self.tensor(name)

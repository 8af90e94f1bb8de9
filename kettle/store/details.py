"""Model details (format, family, size, quantization) and the config blob that holds them.

ollama keeps these in the manifest's config blob (``types/model/config.go``
``ConfigV2``: ``model_format``, ``model_family``, ``model_families``,
``model_type`` shown as the parameter size, ``file_type`` shown as the
quantization level) and shows them as ``details`` in ``/api/tags`` and
``/api/show``. ``probe_gguf`` reads them from a GGUF file's header.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# llama.cpp's ``llama_ftype`` (``general.file_type``) -> the name ollama shows.
FILE_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
}  # fmt: skip

# Bound on a config blob someone else may have written.
MAX_CONFIG_BYTES = 1 << 20


def human_number(n: int) -> str:
    """A parameter count as ollama prints it: ``134.52M``, ``3.2B``, ``7B``, ``12K``."""
    for scale, suffix, digits in ((10**9, "B", 1), (10**6, "M", 2)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{suffix}" if value == math.floor(value) else f"{value:.{digits}f}{suffix}"
    if n >= 1000:
        return f"{n / 1000:.0f}K"
    return str(n)


@dataclass(frozen=True)
class ModelDetails:
    """What ``/api/tags`` shows under ``details``. Empty strings mean unknown."""

    format: str = "gguf"
    family: str = ""
    families: tuple[str, ...] = ()
    parameter_size: str = ""  # e.g. "134.52M"
    quantization_level: str = ""  # e.g. "Q4_1"
    parent_model: str = ""  # the FROM a created model was built on, when known

    def to_json(self) -> dict[str, Any]:
        """ollama's ``details`` object."""
        return {
            "parent_model": self.parent_model,
            "format": self.format,
            "family": self.family,
            "families": list(self.families) or None,
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def with_parent(self, parent: str) -> ModelDetails:
        return ModelDetails(
            self.format, self.family, self.families, self.parameter_size, self.quantization_level, parent
        )


def probe_gguf(path: Path) -> ModelDetails:
    """Details read from a GGUF header (raises kettle.errors.GGUFError on a bad file)."""
    from kettle.gguf import GGUFFile

    with GGUFFile(path) as f:
        arch = f.architecture
        file_type = f.get("general.file_type")
        n_params = sum(math.prod(info.shape) for info in f.tensors.values())
    level = FILE_TYPE_NAMES.get(file_type, "unknown") if isinstance(file_type, int) else ""
    return ModelDetails("gguf", arch, (arch,), human_number(n_params), level)


def config_blob(details: ModelDetails, layer_digests: list[str]) -> bytes:
    """The manifest's config blob (ollama ``ConfigV2`` plus ``parent_model``)."""
    obj = {
        "model_format": details.format,
        "model_family": details.family,
        "model_families": list(details.families),
        "model_type": details.parameter_size,
        "file_type": details.quantization_level,
        "parent_model": details.parent_model,
        "architecture": _GO_ARCH.get(platform.machine().lower(), platform.machine().lower()),
        "os": platform.system().lower(),
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
    }
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def details_from_config(data: bytes) -> ModelDetails:
    """Details from a config blob; fields that are missing or mistyped stay empty."""
    if len(data) > MAX_CONFIG_BYTES:
        return ModelDetails()
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ModelDetails()
    if not isinstance(obj, dict):
        return ModelDetails()

    def text(key: str, default: str = "") -> str:
        value = obj.get(key)
        return value if isinstance(value, str) else default

    families = obj.get("model_families")
    fams = tuple(f for f in families if isinstance(f, str)) if isinstance(families, list) else ()
    return ModelDetails(
        format=text("model_format", "gguf"),
        family=text("model_family"),
        families=fams,
        parameter_size=text("model_type"),
        quantization_level=text("file_type"),
        parent_model=text("parent_model"),
    )

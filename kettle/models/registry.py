"""Architecture name (``general.architecture``) -> the module that loads it.

One line per architecture; modules are imported only when a file needs them.
"""

from __future__ import annotations

import importlib

from kettle.errors import UnsupportedModel
from kettle.gguf import GGUFFile
from kettle.models.encoder import Encoder
from kettle.models.transformer import Transformer

ARCHITECTURES: dict[str, str] = {
    "llama": "kettle.models.llama",
    "qwen2": "kettle.models.llama",
    "gemma3": "kettle.models.gemma3",
    "qwen3": "kettle.models.qwen3",
    "qwen3moe": "kettle.models.qwen3moe",
    "qwen2moe": "kettle.models.qwen2moe",
    "gemma2": "kettle.models.gemma2",
    "phi3": "kettle.models.phi3",
    "granite": "kettle.models.granite",
    "olmo2": "kettle.models.olmo2",
    "starcoder2": "kettle.models.starcoder2",
    "smollm3": "kettle.models.smollm3",
    "bert": "kettle.models.bert",
    "nomic-bert": "kettle.models.nomic_bert",
}


def load_model(gguf: GGUFFile) -> Transformer | Encoder:
    """The architecture's model: a ``Transformer`` (decoders) or an ``Encoder`` (embedding models)."""
    arch = gguf.architecture
    module = ARCHITECTURES.get(arch)
    if module is None:
        raise UnsupportedModel(
            f"{gguf.path}: architecture '{arch}' is not supported "
            f"(supported: {', '.join(sorted(ARCHITECTURES))})"
        )
    return importlib.import_module(module).load(gguf)

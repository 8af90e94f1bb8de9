"""kettle: run quantized language models locally, offline, and serve them.

The public Python API (imported lazily, so ``import kettle`` stays quick):

- ``kettle.load(name_or_path=None, num_ctx=..., num_thread=..., num_batch=...)`` -> ``Model``
- ``Model.generate / chat / embed / logits / tokenize / detokenize``
- ``AutoModelForCausalLM`` (ctransformers-style) and ``ChatModule`` (mlc-style)
- the errors in ``kettle.errors``
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": "kettle.api",
    "Model": "kettle.api",
    "Stream": "kettle.api",
    "ModelSpec": "kettle.api",
    "Chunk": "kettle.engine.batch",
    "Stats": "kettle.engine.batch",
    "AutoModelForCausalLM": "kettle.compat",
    "ChatModule": "kettle.compat",
    "callback": "kettle.callback",
    "KettleError": "kettle.errors",
    "GGUFError": "kettle.errors",
    "InvalidParameter": "kettle.errors",
    "ModelNotFound": "kettle.errors",
    "ContextOverflow": "kettle.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kettle' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value

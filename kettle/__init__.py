"""kettle: run quantized language models locally, offline, and serve them.

The public Python API (imported lazily, so ``import kettle`` stays quick):

- ``kettle.load(name_or_path=None, num_ctx=..., num_thread=..., num_batch=...)`` -> ``Model``
- ``Model.generate / chat / embed / logits / tokenize / detokenize``
- ``AutoModelForCausalLM`` (ctransformers-style) and ``ChatModule`` (mlc-style)
- the errors in ``kettle.errors``
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# numba's OpenMP workers, before numba loads them (every kettle module imports
# this package first). They sleep when idle (PASSIVE) after a short spin (10000
# spins, about 0.1 ms): an endless spin collapses throughput 50-100x when
# another process shares the cores, no spin costs a ~70 us wake-up per kernel.
# Measured on the 2-core dev box, decode t/s SmolLM2 / gemma3: no spin 89 / 50,
# short spin 109 / 57; with another process busy on one core 98 / 44 and 91 / 44.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

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

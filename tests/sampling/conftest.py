"""The reference for the transforms: llama.cpp's own samplers, called through llama-cpp-python.

``llama`` applies one llama.cpp sampler (``llama_sampler_apply``) to a logits row and returns
what is left of the candidate array; no model is needed for that.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import numpy as np
import pytest


class LlamaSamplers:
    """Thin wrapper over llama.cpp's ``llama_sampler_*`` C API."""

    def __init__(self, lib) -> None:
        self.lib = lib

    def apply(self, make: Callable[[], object], logits: np.ndarray,
              accepted: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray, int]:
        """(kept ids, kept logits, selected index) after one sampler from ``make()``;
        ``accepted`` tokens are fed to ``llama_sampler_accept`` first (the penalty window)."""
        lib = self.lib
        n = logits.size
        data = (lib.llama_token_data * n)()
        for i, value in enumerate(logits.tolist()):
            data[i].id, data[i].logit, data[i].p = i, value, 0.0
        cur = lib.llama_token_data_array(data, n, -1, False)
        sampler = make()
        try:
            for token in accepted:
                lib.llama_sampler_accept(sampler, token)
            lib.llama_sampler_apply(sampler, ctypes.byref(cur))
        finally:
            lib.llama_sampler_free(sampler)
        ids = np.array([cur.data[i].id for i in range(cur.size)], dtype=np.int64)
        kept = np.array([cur.data[i].logit for i in range(cur.size)], dtype=np.float32)
        return ids, kept, int(cur.selected)


@pytest.fixture(scope="session")
def llama() -> LlamaSamplers:
    lib = pytest.importorskip("llama_cpp.llama_cpp")
    return LlamaSamplers(lib)

"""Regenerate ``fixtures/llama_samplers.json.gz``: llama.cpp's own samplers on fixed rows.

Needs llama-cpp-python (its bundled llama.cpp is the reference; no model is needed):

    python -m tests.sampling.make_llama_oracle

Each case applies one llama.cpp sampler (``llama_sampler_apply``) to reproducible logits
rows (``rows``) and records what is left of the candidate array: the kept ids, and for the
transforms that change values (temperature, penalties) the kept logits. Not a test.
"""

from __future__ import annotations

import ctypes
import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "fixtures" / "llama_samplers.json.gz"

FILTERS = [("top_k", 1), ("top_k", 17), ("top_k", 150), ("top_p", 0.3), ("top_p", 0.9), ("top_p", 0.99),
           ("min_p", 0.02), ("min_p", 0.3), ("typical", 0.2), ("typical", 0.8)]
PENALTIES = [(64, 1.3, 0.0, 0.0), (8, 1.1, 0.2, 0.4), (64, 0.8, -0.1, 0.3)]
MIROSTAT_V2 = [1.0, 3.0, 5.0, 8.0]
MIROSTAT_V1 = [2.0, 5.0]


def rows(count: int, n: int = 200) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [(rng.standard_normal(n) * rng.uniform(0.5, 4.0)).astype(np.float32) for _ in range(count)]


def histories(count: int) -> list[tuple[int, ...]]:
    """The penalty window of each penalty row: 40 earlier tokens out of 50."""
    rng = np.random.default_rng(5)
    return [tuple(int(t) for t in rng.integers(0, 50, 40)) for _ in range(count)]


class LlamaSamplers:
    """Thin wrapper over llama.cpp's ``llama_sampler_*`` C API."""

    def __init__(self) -> None:
        import llama_cpp.llama_cpp as lib

        self.lib = lib

    def apply(self, make: Callable[[], object], logits: np.ndarray,
              accepted: tuple[int, ...] = ()) -> tuple[list[int], list[float]]:
        """(kept ids, kept logits) after one sampler from ``make()``; ``accepted`` tokens are
        fed to ``llama_sampler_accept`` first (the penalty window)."""
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
        return [int(cur.data[i].id) for i in range(cur.size)], [float(cur.data[i].logit) for i in range(cur.size)]


def main() -> None:
    import llama_cpp

    llama = LlamaSamplers()
    lib = llama.lib
    make = {
        "top_k": lambda v: lambda: lib.llama_sampler_init_top_k(v),
        "top_p": lambda v: lambda: lib.llama_sampler_init_top_p(v, 1),
        "min_p": lambda v: lambda: lib.llama_sampler_init_min_p(v, 1),
        "typical": lambda v: lambda: lib.llama_sampler_init_typical(v, 1),
    }
    out: dict = {"generator": f"tests/sampling/make_llama_oracle.py with llama-cpp-python {llama_cpp.__version__}"}
    out["filters"] = {f"{name}={value}": [llama.apply(make[name](value), row)[0] for row in rows(20)]
                      for name, value in FILTERS}
    out["temperature"] = [llama.apply(lambda: lib.llama_sampler_init_temp(0.7), row) for row in rows(5)]
    out["penalties"] = {
        ",".join(map(str, cfg)): [llama.apply(lambda: lib.llama_sampler_init_penalties(50, *cfg), row, hist)
                                  for row, hist in zip(rows(5, n=50), histories(5), strict=True)]
        for cfg in PENALTIES}
    out["mirostat_v2"] = {str(tau): [llama.apply(lambda: lib.llama_sampler_init_mirostat_v2(1, tau, 0.1), row)[0]
                                     for row in rows(10, n=500)] for tau in MIROSTAT_V2}
    out["mirostat_v1"] = {str(tau): [llama.apply(lambda: lib.llama_sampler_init_mirostat(500, 1, tau, 0.1, 100),
                                                 row)[0] for row in rows(10, n=500)] for tau in MIROSTAT_V1}
    OUT.write_bytes(gzip.compress(json.dumps(out, separators=(",", ":")).encode(), mtime=0))


if __name__ == "__main__":
    main()

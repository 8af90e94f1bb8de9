"""Regenerate ``oracle/decoders.npz``: llama.cpp's per-position logits of the tiny
random decoders of ``decoder_factory.ORACLE_MODELS``.

    pip install llama-cpp-python        # compiles llama.cpp (~12 minutes)
    python -m tests.models.oracle_gen

The models are rebuilt from their seeds, so the oracle can be regenerated against
a newer llama.cpp at any time; the test suite itself needs no llama.cpp. Each run
(``RUNS``) evaluates ``n_tokens`` random ids in a context of ``n_ctx`` positions
(llama.cpp rounds contexts up to 256; LongRoPE picks its factors by the context)
and stores the ids, the context and the logits (float16) under ``<model>/ids``,
``<model>/n_ctx`` and ``<model>/logits``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tests.models.decoder_factory import N_VOCAB, ORACLE_MODELS, tiny_decoder

OUT = Path(__file__).parent / "oracle" / "decoders.npz"
GGML_TYPE_F32 = 0

N_CTX = 256  # phi3's 256 is past its original context of 32 (long factors); phi3-short's is not
N_TOKENS = 48  # longer than every sliding window (8) and YaRN's original contexts (16, 24)


def run_ids(model: str) -> list[int]:
    return np.random.default_rng(sum(map(ord, model)) + 7).integers(3, N_VOCAB, N_TOKENS).tolist()


def main() -> None:
    import llama_cpp

    arrays: dict[str, np.ndarray] = {"llama_cpp_python": np.array(llama_cpp.__version__)}
    with tempfile.TemporaryDirectory() as tmp:
        for run in ORACLE_MODELS:
            path = tiny_decoder(Path(tmp) / f"{run}.gguf", run)
            n_ctx = N_CTX
            llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=1,
                                  n_threads_batch=1, logits_all=True, flash_attn=False, swa_full=True,
                                  type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, verbose=False)
            if llm.n_ctx() != n_ctx:
                raise SystemExit(f"{run}: llama.cpp made a context of {llm.n_ctx()}, not {n_ctx}")
            ids = run_ids(run)
            llm.eval(ids)
            logits = np.array(llm.scores[:len(ids)], dtype=np.float32)  # (n, n_vocab)
            arrays[f"{run}/ids"] = np.array(ids, dtype=np.int32)
            arrays[f"{run}/n_ctx"] = np.array(n_ctx)
            arrays[f"{run}/logits"] = logits.astype(np.float16)
            print(f"{run}: {logits.shape}, largest |logit| {np.abs(logits).max():.3f}")
            llm.close()
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

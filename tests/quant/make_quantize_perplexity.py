"""Regenerate tests/quant/quantize_perplexity.json with llama.cpp (llama-cpp-python).

    pip install llama-cpp-python   # a tool for this script only; the test needs just the JSON
    python -m tests.quant.make_quantize_perplexity

kettle dequantizes the bundled SmolLM2 (Q4_1) to F32 (``perplexity_cases.make_f32``);
llama.cpp's ``llama_model_quantize`` (default parameters, no importance matrix)
quantizes that file to each of ``perplexity_cases.TYPES``, and llama.cpp computes the
perplexity of the oracle text on each of its files, as tests/oracle/README.md section 4
does it (n_ctx = n_batch = n_ubatch = 128, 1 thread, flash attention on, f16 KV cache,
a cleared cache per chunk). The sha256 of every file is recorded; kettle's own
quantization of the F32 file is checked to be the same bytes before anything is written.
As a check of this harness, llama.cpp's perplexity of the bundled Q4_1 file itself is
recorded beside the oracle's (the oracle's llama.cpp is a different build).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from tests.conftest import smollm2_file
from tests.quant.perplexity_cases import (
    N_CTX,
    TEXT,
    TYPES,
    chunks,
    make_f32,
    perplexity,
    sha256,
    text,
)
from tests.quant.quantize_cases import FTYPES

OUT = Path(__file__).with_name("quantize_perplexity.json")
ORACLE = Path(__file__).parents[1] / "oracle" / "smollm2-135m-q4_1" / "perplexity.json"


def llama_cpp_perplexity(path: Path) -> tuple[float, list[int]]:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, n_threads=1,
                          n_threads_batch=1, logits_all=True, flash_attn=True, verbose=False)
    ids = llm.tokenize(text().encode(), add_bos=True, special=False)  # add_special=true, parse_special=false
    bos = llm.token_bos() if llm._model.add_bos_token() else None

    def logits(chunk: list[int]) -> np.ndarray:
        llm.reset()  # n_tokens = 0: eval clears the whole cache
        llm.eval(chunk)
        return np.array(llm.scores[: len(chunk)], dtype=np.float32)

    ppl = perplexity(logits, chunks(ids, bos))
    llm.close()
    return ppl, ids


def main() -> None:
    import llama_cpp

    from kettle.quant.file import quantize_file

    oracle = json.loads(ORACLE.read_text())["c_api_recomputation"]
    bundled = smollm2_file()
    q4_1_ppl, ids = llama_cpp_perplexity(bundled)
    assert ids == oracle["text_ids"], "llama-cpp-python tokenizes the text differently from the oracle"
    out: dict = {
        "llama_cpp_python": llama_cpp.__version__,
        "text": {"path": str(TEXT.relative_to(Path(__file__).parents[2])), "sha256": sha256(TEXT),
                 "n_tokens": len(ids)},
        "source": {"bundled_sha256": sha256(bundled)},
        "harness_check": {"bundled_q4_1_ppl": q4_1_ppl, "oracle_ppl": oracle["ppl"]},
        "types": {},
    }
    print(f"bundled Q4_1: llama-cpp-python {q4_1_ppl:.6f}, oracle {oracle['ppl']}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        f32 = make_f32(bundled, d / "smollm2-f32.gguf")
        out["source"]["f32_sha256"] = sha256(f32)
        for t in TYPES:
            theirs, ours = d / f"llama-{t}.gguf", d / f"kettle-{t}.gguf"
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = FTYPES[t]
            params.nthread = 1
            if llama_cpp.llama_model_quantize(str(f32).encode(), str(theirs).encode(), params) != 0:
                raise SystemExit(f"llama.cpp failed to quantize to {t}")
            quantize_file(f32, ours, t)
            digest = sha256(theirs)
            if sha256(ours) != digest:
                raise SystemExit(f"{t}: kettle's file differs from llama.cpp's")
            ppl, _ = llama_cpp_perplexity(theirs)
            out["types"][t] = {"sha256": digest, "size": theirs.stat().st_size, "llama_cpp_ppl": ppl}
            print(t, digest, f"{ppl:.6f}", flush=True)
            theirs.unlink()
            ours.unlink()
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

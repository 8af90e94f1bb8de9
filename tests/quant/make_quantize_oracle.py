"""Regenerate tests/quant/quantize_oracle.json with llama.cpp (llama-cpp-python's llama_model_quantize).

    python -m tests.quant.make_quantize_oracle

For each model of ``quantize_cases`` and each type, llama.cpp quantizes the file
(no importance matrix, default parameters) and the sha256 of every output tensor
(and of the whole file) is recorded. CI needs only the JSON.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tests.quant.quantize_cases import FTYPES, MODELS, TYPES, digests, make_model

OUT = Path(__file__).with_name("quantize_oracle.json")


def main() -> None:
    import llama_cpp

    oracle: dict = {"llama_cpp_python": llama_cpp.__version__, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for model in MODELS:
            src = make_model(d, model)
            oracle["models"][model] = {}
            for t in TYPES:
                dst = d / f"{model}.{t}.gguf"
                params = llama_cpp.llama_model_quantize_default_params()
                params.ftype = FTYPES[t]
                params.nthread = 1
                rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
                if rc != 0:
                    raise SystemExit(f"llama.cpp failed on {model} {t}")
                oracle["models"][model][t] = digests(dst)
                print(model, t)
    OUT.write_text(json.dumps(oracle, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

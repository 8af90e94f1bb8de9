"""Regenerate ``fixtures/encoder_oracle.json``: llama.cpp's token ids and embeddings of
the tiny random encoders (``encoder_factory.MODELS``) on ``encoder_factory.TEXTS``.

    pip install llama-cpp-python        # compiles llama.cpp (~12 minutes)
    python -m tests.models.make_encoder_oracle

The models are rebuilt from their seeds, so the fixture can be regenerated against
a newer llama.cpp at any time; the test suite itself needs no llama.cpp.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tests.models.encoder_factory import MODELS, N_CTX, TEXTS, tiny_encoder

OUT = Path(__file__).parent / "fixtures" / "encoder_oracle.json"


def main() -> None:
    import llama_cpp

    result = {"llama_cpp_python": llama_cpp.__version__, "texts": TEXTS, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            path = tiny_encoder(Path(tmp) / f"{name}.gguf", name)
            n_ctx = min(512, N_CTX[MODELS[name][0]])
            llm = llama_cpp.Llama(str(path), embedding=True, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                                  n_threads=1, n_threads_batch=1, verbose=False)
            rows = []
            for text in TEXTS:
                ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
                vector = llm.embed(text)  # pooled as the file says, not normalised
                rows.append({"ids": ids, "embedding": [round(float(v), 7) for v in vector]})
            result["models"][name] = rows
            llm.close()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

"""Write llama.cpp's logits for the LoRA case: ``python -m tests.models.lora.make_oracle``.

Needs llama-cpp-python (the suite does not: it reads the committed ``oracle.npz``).
Rerun it against a newer llama.cpp to check kettle still agrees.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tests.models.lora.case import IDS, write_case

ORACLE = Path(__file__).with_name("oracle.npz")


def llama_cpp_logits(model: Path, adapter: Path | None) -> np.ndarray:
    import llama_cpp

    kwargs = {"lora_path": str(adapter)} if adapter is not None else {}
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=64, n_batch=64, n_threads=1, logits_all=True,
                          verbose=False, **kwargs)
    llm.eval(IDS)
    return np.array(llm.scores[: len(IDS)], dtype=np.float32)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        base, adapter = write_case(Path(d))
        np.savez_compressed(ORACLE, ids=np.array(IDS, dtype=np.int32),
                            base=llama_cpp_logits(base, None), adapted=llama_cpp_logits(base, adapter))
    print(f"wrote {ORACLE}")


if __name__ == "__main__":
    main()

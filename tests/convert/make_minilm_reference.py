"""Regenerate ``fixtures/minilm_reference.json``: sentence-transformers' embeddings and
the Hugging Face tokenizer's ids of ``minilm.TEXTS`` with all-MiniLM-L6-v2.

    pip install torch sentence-transformers     # not test dependencies: only this script needs them
    python -m tests.convert.make_minilm_reference
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tests.convert.minilm import FIXTURE, TEXTS, extract


def main() -> None:
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as tmp:
        model = SentenceTransformer(str(extract(Path(tmp))), device="cpu")
        vectors = model.encode(TEXTS, normalize_embeddings=True)
        ids = [model.tokenizer(text)["input_ids"] for text in TEXTS]
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({
        "sentence_transformers": sentence_transformers.__version__,
        "texts": TEXTS,
        "ids": ids,
        "embeddings": [[round(float(x), 7) for x in v] for v in vectors],
    }, indent=1) + "\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()

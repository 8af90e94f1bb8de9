"""Mutate a small valid GGUF thousands of times: every outcome is a parsed file
or a GGUFError, in bounded time, and every tensor view stays inside the file."""

from __future__ import annotations

import time

import numpy as np

from kettle.errors import GGUFError
from kettle.gguf import GGUFFile
from tests.gguf_factory import write_gguf

N_MUTATIONS = 4000


def _seed_file(tmp_path):
    meta = {
        "general.architecture": "llama",
        "general.name": "fuzz",
        "llama.block_count": 1,
        "tokenizer.ggml.tokens": ["a", "b", "<s>"],
        "tokenizer.ggml.scores": [0.0, -1.0, -2.0],
    }
    tensors = {"w": np.ones((2, 32), dtype=np.float32), "v": np.zeros(32, dtype=np.float16)}
    return write_gguf(tmp_path / "seed.gguf", meta, tensors).read_bytes()


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.integers(1, 4)):
        op = rng.integers(0, 5)
        i = int(rng.integers(0, len(buf)))
        if op == 0:  # flip a byte
            buf[i] = int(rng.integers(0, 256))
        elif op == 1:  # truncate
            del buf[i:]
        elif op == 2:  # a large little-endian integer over a length or count
            buf[i : i + 8] = int(rng.choice([2**63 - 1, 2**32, 2**31, 0xFFFFFFFF, 7])).to_bytes(8, "little")
        elif op == 3:  # insert junk
            buf[i:i] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        else:  # delete a span
            del buf[i : i + int(rng.integers(1, 16))]
        if not buf:
            break
    return bytes(buf)


def test_fuzz_mutations(tmp_path):
    seed = _seed_file(tmp_path)
    rng = np.random.default_rng(1234)
    path = tmp_path / "m.gguf"
    outcomes = {"ok": 0, "error": 0}
    worst = 0.0
    for _ in range(N_MUTATIONS):
        data = _mutate(rng, seed)
        path.write_bytes(data)
        t0 = time.perf_counter()
        try:
            with GGUFFile(path) as f:
                for name, info in f.tensors.items():
                    assert info.offset + info.nbytes <= len(data)
                    with np.errstate(all="ignore"):
                        f.tensor(name).sum()
            outcomes["ok"] += 1
        except GGUFError:
            outcomes["error"] += 1
        worst = max(worst, time.perf_counter() - t0)
    assert outcomes["error"] > N_MUTATIONS // 2
    assert worst < 1.0, f"slowest parse took {worst:.2f}s"

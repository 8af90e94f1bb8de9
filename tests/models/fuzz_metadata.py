"""Structure-aware fuzzing of model files: hyper-parameters and tensor shapes.

The byte-level fuzz (tests/gguf/test_fuzz.py) proves the reader refuses broken
files; this one starts from tiny *valid* models and changes what the reader
cannot judge: metadata values (types, ranges, per-layer arrays, missing keys),
tensor shapes and types, and whole models whose sizes agree with their tensors
but not with each other (4 query heads on 3 kv heads). Every case must either
load and then run a few tokens, or raise a ``KettleError``; anything else (an
exception that is not kettle's, a hang, a crash) is a failure.

Run as a script (``python -m tests.models.fuzz_metadata --cases 2000``) it
prints one line per failure and a summary; the tests run it in a subprocess,
so a segfault is a failed test rather than a lost test run, and once more
with numba's ``NUMBA_BOUNDSCHECK=1`` (every kernel index checked).
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from tests.gguf_factory import Typed, tiny_model_parts, tiny_vocab, write_gguf
from tests.models.decoder_factory import MODELS as DECODERS
from tests.models.decoder_factory import decoder_parts
from tests.models.encoder_factory import N_CTX, encoder_metadata, encoder_tensors, wordpiece_tokens

ARCHS = ("llama", "qwen2", "gemma3")
QTYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0")
HP_KEYS = (
    "block_count", "embedding_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.key_length", "attention.value_length",
    "attention.layer_norm_rms_epsilon", "rope.dimension_count", "rope.freq_base", "context_length",
    "attention.sliding_window",
)
TOKENIZER_KEYS = ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id")
ENCODER_ARCHS = ("bert", "nomic-bert")
ENCODER_KEYS = HP_KEYS + ("pooling_type", "attention.layer_norm_epsilon", "attention.causal")
ENCODER_TOKENIZER_KEYS = (
    "tokenizer.ggml.token_type_count", "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.normalizer.lowercase", "tokenizer.ggml.normalizer.strip_accents",
)
ENCODER_SHARE = 0.3  # of the cases
DECODER_SHARE = 0.35  # of the rest: decoder_factory's architectures (rope scaling, windows, experts, ...)
DECODER_KEYS = HP_KEYS + (
    "rope.scaling.type", "rope.scaling.factor", "rope.scale_linear", "rope.scaling.attn_factor",
    "rope.scaling.original_context_length", "rope.scaling.finetuned", "rope.freq_base_swa",
    "attention.sliding_window_pattern", "expert_count", "expert_used_count", "expert_feed_forward_length",
    "expert_shared_feed_forward_length", "attn_logit_softcapping", "final_logit_softcapping", "logit_scale",
    "residual_scale", "embedding_scale", "attention.scale", "attention.layer_norm_epsilon",
)
ROPE_FACTOR_TENSORS = ("rope_freqs.weight", "rope_factors_short.weight", "rope_factors_long.weight")
CASE_SECONDS = 20.0  # a case that loads and runs 3 tokens takes milliseconds


def _interesting_value(rng: random.Random) -> Any:
    kind = rng.randrange(14)
    if kind == 0:
        return rng.choice([0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 128, 4096])
    if kind == 1:
        return Typed(rng.choice([-1, -2, -(2**31)]), "INT32")
    if kind == 2:
        return rng.choice([2**31, 2**32 - 1, 10**9, 2**24 + 1])
    if kind == 3:
        return Typed(rng.choice([2**63, 2**64 - 1, 2**40]), "UINT64")
    if kind == 4:
        return Typed(rng.choice([-(2**63), -1]), "INT64")
    if kind == 5:
        return rng.choice([0.0, 0.5, -1.0, 1e-30, 1e30, float("nan"), float("inf"), float("-inf")])
    if kind == 6:
        return rng.choice(["", "4", "x" * 200])
    if kind == 7:
        n = rng.choice([0, 1, 2, 3, 6, 100])
        v = rng.choice([0, 1, 2, 4, 8, -1])
        return Typed([v] * n, "ARRAY", "INT32")
    if kind == 8:
        return Typed([rng.randrange(0, 9) for _ in range(rng.choice([3, 6]))], "ARRAY", "INT32")
    if kind == 9:
        return rng.choice([True, False])
    if kind == 10:
        return ["a", "b"]
    if kind == 11:
        return None  # remove the key
    if kind == 12:
        return Typed(rng.randrange(0, 300), "UINT8")
    return rng.randrange(0, 200)


def _dims(rng: random.Random, arch: str) -> dict[str, int]:
    """Sizes that the tensors will agree with, but maybe not with each other."""
    n_head = rng.choice([1, 2, 3, 4, 5, 6, 8])
    return {
        "n_head": n_head,
        "n_kv_head": rng.choice([1, 2, 3, 4, 8, n_head]),
        "head_dim": rng.choice([2, 4, 6, 8, 16, 32]),
        "n_embd": rng.choice([32, 48, 64]),
        "n_ff": rng.choice([16, 32, 48]),
        "n_layer": rng.choice([1, 2, 3, 6, 7]),
        "n_vocab": rng.choice([64, 80, 96]),
    }


def _encoder_parts(rng: random.Random, case: int) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """(arch, description, metadata, tensors) of a valid tiny encoder, maybe with sizes that
    agree with the tensors but not with each other."""
    arch = rng.choice(ENCODER_ARCHS)
    dims = None
    if rng.random() < 0.3:
        dims = {"n_head": rng.choice([1, 2, 3, 4, 5, 8]), "n_embd": rng.choice([24, 32, 48]),
                "n_ff": rng.choice([16, 40]), "n_layer": rng.choice([1, 2, 3])}
    tokens, types = wordpiece_tokens()
    n_ctx = rng.choice([N_CTX[arch], 16, 3])
    meta = encoder_metadata(arch, len(tokens), pooling=rng.choice([1, 2, 3]), lowercase=rng.random() < 0.5,
                            n_ctx=n_ctx, dims=dims)
    meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"] = tokens, types
    tensors = encoder_tensors(arch, len(tokens), n_ctx, case, f16=rng.random() < 0.3,
                              qkv_bias=rng.random() < 0.5, dims=dims)
    return arch, f"{arch} dims {dims} n_ctx {n_ctx}", meta, tensors


def make_case(rng: random.Random, case: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(description, metadata, tensors) of one fuzz case."""
    if rng.random() < ENCODER_SHARE:
        arch, desc, meta, tensors = _encoder_parts(rng, case)
        return _mutate(rng, arch, [desc], meta, tensors, ENCODER_KEYS, ENCODER_TOKENIZER_KEYS)
    if rng.random() < DECODER_SHARE:
        name = rng.choice(sorted(DECODERS))
        meta, tensors = decoder_parts(name, seed=case)
        arch = DECODERS[name][0]
        changes = [name]
        for factor in ROPE_FACTOR_TENSORS:
            if factor in tensors and rng.random() < 0.2:  # hostile frequency factors
                value = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
                tensors[factor] = np.full_like(tensors[factor], value)
                changes.append(f"{factor} all {value}")
        return _mutate(rng, arch, changes, meta, tensors, DECODER_KEYS, TOKENIZER_KEYS)
    arch = rng.choice(ARCHS)
    mode = rng.randrange(4)
    dims = _dims(rng, arch) if mode == 0 else {}
    # Arbitrary sizes need F32; the default ones are whole 32-element blocks.
    qtype = "F32" if dims else rng.choice(QTYPES)
    meta, tensors = tiny_model_parts(arch, qtype, seed=case, vocab=True, **dims)
    changes: list[str] = [f"{arch} {qtype} dims {dims}" if dims else f"{arch} {qtype}"]
    return _mutate(rng, arch, changes, meta, tensors, HP_KEYS, TOKENIZER_KEYS, mode)


def _mutate(rng: random.Random, arch: str, changes: list[str], meta: dict[str, Any], tensors: dict[str, Any],
            hp_keys: tuple[str, ...], tokenizer_keys: tuple[str, ...],
            mode: int | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Change metadata values and/or tensors of a valid model (``mode``: 1 values, 2 tensors, 3 both)."""
    mode = rng.randrange(1, 4) if mode is None else mode
    if mode == 1 or mode == 3:  # metadata values
        for _ in range(rng.choice([1, 1, 2, 3])):
            key = (rng.choice(tokenizer_keys) if rng.random() < 0.15 else f"{arch}.{rng.choice(hp_keys)}")
            value = _interesting_value(rng)
            changes.append(f"{key}={getattr(value, 'value', value)!r:.60}")
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
    if mode == 2 or mode == 3:  # tensors
        names = sorted(tensors)
        for _ in range(rng.choice([1, 2])):
            name = rng.choice(names)
            if name not in tensors:
                continue
            t = tensors[name]
            if isinstance(t, tuple):  # quantized (raw, type): only dropping, copying or a new F32 shape
                t = np.zeros(meta_shape(t), np.float32)
            op = rng.randrange(5)
            if op == 0:
                del tensors[name]
                changes.append(f"drop {name}")
            elif op == 1 and t.ndim == 2:
                tensors[name] = np.ascontiguousarray(t.T)
                changes.append(f"transpose {name}")
            elif op == 2:
                shape = list(t.shape)
                d = rng.randrange(len(shape))
                shape[d] = max(1, shape[d] + rng.choice([-1, 1, 16]))
                tensors[name] = np.zeros(shape, np.float32)
                changes.append(f"reshape {name} {tuple(shape)}")
            elif op == 3:
                tensors[name] = t.astype(np.float16)
                changes.append(f"f16 {name}")
            else:
                tensors[f"blk.{rng.choice([7, 99, 1000])}.{name.split('.', 2)[-1]}"] = t
                changes.append(f"extra layer copy of {name}")
    if rng.random() < 0.1:  # a vocabulary of another size than the embedding
        meta.update(tiny_vocab(rng.choice([64, 70, 100])))
        changes.append("other vocab size")
    return "; ".join(changes), meta, tensors


def meta_shape(quantized: tuple[np.ndarray, Any]) -> tuple[int, int]:
    """(rows, cols) of a ``(raw, GGMLType)`` tensor."""
    from kettle.quant import QUANT_INFO

    raw, ggml_type = quantized
    info = QUANT_INFO[ggml_type]
    return raw.shape[0], raw.shape[1] // info.type_size * info.block_size


def run_case(path: Path) -> str:
    """'ok', or 'refused: ...' for a KettleError; anything else propagates."""
    import kettle
    from kettle.errors import KettleError

    try:
        model = kettle.load(path, num_ctx=32)
    except KettleError as e:
        return f"refused: {type(e).__name__}: {str(e).split(': ', 1)[-1][:70]}"
    try:
        if model.embedding_only:  # an encoder: embed (a text longer than num_ctx is cut)
            vectors = model.embed(["hello world", "Café 中文 x" * 20], truncate=True)
            if not np.isfinite(vectors).all():
                raise AssertionError(f"non-finite embedding {vectors}")
            return "ok"
        ids = model.tokenize("hello world")
        stream = model.generate_ids(ids, num_predict=3, temperature=0)
        stream.text()
        model.logits(ids)
    except KettleError as e:
        return f"refused at run: {type(e).__name__}"
    return "ok"


def fuzz(cases: int, seed: int, out: Any = sys.stdout, verbose: bool = False) -> int:
    """Run ``cases`` cases; print failures; return how many failed."""
    rng = random.Random(seed)
    failures = 0
    outcomes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(cases):
            desc, meta, tensors = make_case(rng, case)
            path = Path(tmp) / f"case{case}.gguf"
            try:
                write_gguf(path, meta, tensors)
            except (ValueError, TypeError, OverflowError, struct.error):
                continue  # gguf-py cannot write this combination: not a case
            t0 = time.monotonic()
            try:
                outcome = run_case(path)
            except Exception:  # noqa: BLE001 - every other exception is the finding
                failures += 1
                print(f"FAIL case {case}: {desc}\n{traceback.format_exc(limit=4)}", file=out, flush=True)
                outcome = "failed"
            elapsed = time.monotonic() - t0
            if elapsed > CASE_SECONDS:
                failures += 1
                print(f"SLOW case {case} ({elapsed:.1f} s): {desc}", file=out, flush=True)
            key = outcome.split(":")[0] if not verbose else outcome
            outcomes[key] = outcomes.get(key, 0) + 1
            path.unlink()
    if verbose:
        for outcome, count in sorted(outcomes.items(), key=lambda kv: -kv[1]):
            print(f"{count:6d}  {outcome}", file=out)
    classes: dict[str, int] = {}
    for outcome, count in outcomes.items():
        name = outcome.split(":")[0]
        classes[name] = classes.get(name, 0) + count
    print(f"fuzz: {cases} cases, outcomes {dict(sorted(classes.items()))}, {failures} failed", file=out, flush=True)
    return failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="count the outcomes by message")
    args = ap.parse_args()
    sys.exit(1 if fuzz(args.cases, args.seed, verbose=args.verbose) else 0)


if __name__ == "__main__":
    main()

"""Regenerate ``fixtures/variants_golden.json`` from llama.cpp itself.

Needs llama-cpp-python (its bundled llama.cpp is the reference) and gguf-py:

    python -m tests.tokenizer.make_golden

For each variant in ``variants.VARIANTS`` it writes the changed metadata (no
tensors) as a GGUF file, loads it vocab-only through llama.cpp's C API and
records ``llama_tokenize`` ids for every golden string and all four
add_special/parse_special settings, ``llama_detokenize`` of the
(add_special, parse_special) ids, ``llama_token_to_piece`` of a few ids and
the ``llama_vocab_is_eog`` set. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import ctypes
import json
import tempfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from kettle.gguf import GGUFFile
from tests.conftest import gemma3_file, smollm2_file
from tests.tokenizer.variants import VARIANTS, golden_strings

OUT = Path(__file__).parent / "fixtures" / "variants_golden.json"
SETTINGS = {"TT": (True, True), "TF": (True, False), "FT": (False, True), "FF": (False, False)}


class LlamaCppVocab:
    """llama.cpp's tokenizer through llama-cpp-python's low-level bindings."""

    def __init__(self, path: Path) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self._log = llama_cpp.llama_log_callback(lambda level, text, user: None)
        llama_cpp.llama_log_set(self._log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp refused {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        buf = (self.lib.llama_token * cap)()
        n = self.lib.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, parse_special)
        assert n >= 0
        return list(buf[:n])

    def detokenize(self, ids: list[int], remove_special: bool, unparse_special: bool) -> bytes:
        arr = (self.lib.llama_token * max(1, len(ids)))(*ids)
        cap = 64 + 64 * len(ids)
        buf = ctypes.create_string_buffer(cap)
        n = self.lib.llama_detokenize(self.vocab, arr, len(ids), buf, cap, remove_special, unparse_special)
        assert n >= 0
        return buf.raw[:n]

    def piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(512)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, 512, 0, special)
        assert n >= 0
        return buf.raw[:n]

    def eog(self) -> list[int]:
        return [i for i in range(self.n_vocab) if self.lib.llama_vocab_is_eog(self.vocab, i)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def write_variant(src: Path, meta: dict[str, Any], dst: Path) -> None:
    """``src``'s metadata with the keys that differ from ``meta`` replaced, no tensors."""
    base = GGUFFile(src).metadata
    changed = {k for k in set(base) | set(meta) if k not in base or k not in meta or not _same(base[k], meta[k])}
    reader = gguf.GGUFReader(str(src))
    writer = gguf.GGUFWriter(str(dst), base["general.architecture"])
    vt = gguf.GGUFValueType
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in changed:
            continue
        kind = field.types[0]
        if kind == vt.ARRAY:
            sub = field.types[1]
            if sub == vt.STRING:
                value = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(name, value, kind, sub_type=sub)
        elif kind == vt.STRING:
            writer.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8"), kind)
        else:
            writer.add_key_value(name, field.parts[field.data[0]].tolist()[0], kind)
    for key in sorted(changed & set(meta)):
        value = meta[key]
        if isinstance(value, bool):
            writer.add_key_value(key, value, vt.BOOL)
        elif isinstance(value, str):
            writer.add_key_value(key, value, vt.STRING)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            writer.add_key_value(key, value, vt.ARRAY, sub_type=vt.STRING)
        else:
            raise TypeError(f"make_golden cannot write {key}={type(value).__name__}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> None:
    import llama_cpp

    sources = {"smollm2": smollm2_file(), "gemma3": gemma3_file()}
    strings = golden_strings()
    out: dict[str, Any] = {
        "generator": f"tests/tokenizer/make_golden.py with llama-cpp-python {llama_cpp.__version__}",
        "settings": {k: {"add_special": a, "parse_special": p} for k, (a, p) in SETTINGS.items()},
        "strings": strings,
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, (base, change) in VARIANTS.items():
            path = Path(tmp) / f"{name}.gguf"
            write_variant(sources[base], change(dict(GGUFFile(sources[base]).metadata)), path)
            ref = LlamaCppVocab(path)
            piece_ids = sorted({*range(41), ref.n_vocab - 1, min(49151, ref.n_vocab - 1)})
            rows = []
            for text in strings:
                ids = {k: ref.tokenize(text, a, p) for k, (a, p) in SETTINGS.items()}
                rows.append({
                    "ids": ids,
                    "detok_hex": ref.detokenize(ids["TT"], False, True).hex(),
                    "detok_removed_hidden_hex": ref.detokenize(ids["TT"], True, False).hex(),
                })
            out["variants"][name] = {
                "base": base,
                "eog_ids": ref.eog(),
                "pieces_hex": {str(i): [ref.piece(i, True).hex(), ref.piece(i, False).hex()] for i in piece_ids},
                "results": rows,
            }
            print(name, "done")
    OUT.write_text(json.dumps(out, separators=(",", ":"), ensure_ascii=False))


if __name__ == "__main__":
    main()

"""The GGUF reader: real files, tiny generated files, and hostile ones."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from kettle.errors import GGUFError
from kettle.gguf import GGMLType, GGUFFile
from tests.gguf_factory import write_gguf


def test_reads_real_smollm2(smollm2_path):
    with GGUFFile(smollm2_path) as f:
        assert f.version == 3
        assert f.architecture == "llama"
        assert f.metadata["llama.block_count"] == 30
        assert len(f.metadata["tokenizer.ggml.tokens"]) == 49152
        info = f.tensors["token_embd.weight"]
        assert info.shape == (49152, 576) and info.ggml_type == GGMLType.Q8_0
        view = f.tensor("token_embd.weight")
        assert view.shape == (49152, 576 // 32 * 34) and not view.flags.writeable
        assert not view.flags.owndata  # a view into the map, not a copy


def test_gemma3_load_is_zero_copy(gemma3_path):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with GGUFFile(gemma3_path) as f:
        views = [f.tensor(name) for name in f.tensors]
        assert sum(v.nbytes for v in views) > 200_000_000
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 60, f"opening the file grew resident memory by {grown_mb:.0f} MB"
        del views


def test_tiny_roundtrip(tmp_path):
    path = write_gguf(tmp_path / "t.gguf", {"general.architecture": "llama", "x.list": [1, 2, 3], "x.s": "héllo"},
                      {"a": np.arange(64, dtype=np.float32).reshape(2, 32)})
    with GGUFFile(path) as f:
        assert f.metadata["x.s"] == "héllo"
        assert list(f.metadata["x.list"]) == [1, 2, 3]
        assert f.tensors["a"].shape == (2, 32)
        np.testing.assert_array_equal(f.tensor("a"), np.arange(64, dtype=np.float32).reshape(2, 32))


def _header(version=3, n_tensors=0, n_kv=0):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _kv_string(key: str, value: bytes, claimed: int | None = None) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", claimed or len(value)) + value


HOSTILE = {
    "bad magic": b"GGML" + b"\0" * 40,
    "version 1": _header(version=1) + b"\0" * 16,
    "version 99": _header(version=99) + b"\0" * 16,
    "big endian": b"GGUF" + struct.pack(">IQQ", 3, 0, 0),
    "absurd kv count": _header(n_kv=2**62) + b"\0" * 32,
    "absurd tensor count": _header(n_tensors=2**60) + b"\0" * 32,
    "string past end": _header(n_kv=1) + _kv_string("k", b"abc", claimed=2**40),
    "unknown value type": _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77) + b"\0" * 8,
    "array past end": _header(n_kv=1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 6, 2**50) + b"\0" * 8,
    "invalid utf8 key": _header(n_kv=1) + struct.pack("<Q", 2) + b"\xff\xfe" + struct.pack("<IB", 0, 1) + b"\0" * 8,
    "truncated header": b"GGUF\x03\x00",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_headers(tmp_path, name):
    path = tmp_path / "bad.gguf"
    path.write_bytes(HOSTILE[name])
    with pytest.raises(GGUFError) as err:
        GGUFFile(path)
    assert str(path) in str(err.value)


def test_duplicate_key(tmp_path):
    body = _kv_string("a", b"x") + _kv_string("a", b"y")
    path = tmp_path / "dup.gguf"
    path.write_bytes(_header(n_kv=2) + body + b"\0" * 32)
    with pytest.raises(GGUFError, match="duplicate metadata key"):
        GGUFFile(path)


def _with_tensor(tmp_path, ne, type_id, offset, alignment=None, extra_tensor=None):
    kvs = b""
    n_kv = 0
    if alignment is not None:
        k = b"general.alignment"
        kvs += struct.pack("<Q", len(k)) + k + struct.pack("<II", 4, alignment)
        n_kv = 1
    tensors = [("t", ne, type_id, offset)] + ([extra_tensor] if extra_tensor else [])
    infos = b""
    for name, dims, tid, off in tensors:
        infos += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", tid, off)
    data = _header(n_tensors=len(tensors), n_kv=n_kv) + kvs + infos
    data += b"\0" * (-len(data) % 32) + b"\0" * 256
    path = tmp_path / "t.gguf"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "ne,type_id,offset,alignment,match",
    [
        ([2**40, 2**40], 0, 0, None, "past the end"),
        ([2**63, 2**63, 2**63, 2**63], 0, 0, None, "past the end"),
        ([33], 2, 0, None, "whole number"),
        ([32], 2, 2**63, None, "past the end"),
        ([8], 0, 4, None, "not a multiple of the alignment"),
        ([8], 0, 0, 3, "power of two"),
        ([8], 0, 0, 0, "power of two"),
        ([8], 200, 0, None, "unknown tensor type"),
        ([8, 0], 0, 0, None, "zero dimension"),
        ([1, 1, 1, 1, 1], 0, 0, None, "dimensions"),
    ],
)
def test_hostile_tensors(tmp_path, ne, type_id, offset, alignment, match):
    with pytest.raises(GGUFError, match=match):
        GGUFFile(_with_tensor(tmp_path, ne, type_id, offset, alignment))


def test_duplicate_and_overlapping_tensors(tmp_path):
    with pytest.raises(GGUFError, match="duplicate tensor"):
        GGUFFile(_with_tensor(tmp_path, [8], 0, 0, extra_tensor=("t", [8], 0, 64)))
    with pytest.raises(GGUFError, match="overlap"):
        GGUFFile(_with_tensor(tmp_path, [16], 0, 0, extra_tensor=("u", [8], 0, 32)))


def test_not_a_file(tmp_path):
    with pytest.raises(GGUFError, match="not a regular file"):
        GGUFFile(tmp_path)
    with pytest.raises(GGUFError):
        GGUFFile(tmp_path / "missing.gguf")


def test_close_never_unmaps_under_a_live_view(tmp_path):
    """Reading a tensor view after ``close`` must not crash the process (numpy holds no buffer
    export on the map): the file stays mapped until the last view is gone."""
    import gc

    from tests.gguf_factory import tiny_model

    path = tiny_model(tmp_path / "m.gguf", qtype="F32")
    with GGUFFile(path) as f:
        view = f.tensor("output_norm.weight")[1:]
        expected = float(np.asarray(view, dtype=np.float64).sum())
    assert float(np.asarray(view, dtype=np.float64).sum()) == expected
    del view
    gc.collect()
    f.close()
    assert f._mmap.closed

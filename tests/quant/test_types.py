"""GGML type ids and block geometry against gguf-py's tables; block field offsets against ggml's structs."""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import numpy as np
import pytest

from kettle.errors import UnsupportedModel
from kettle.quant import QUANT_INFO, SUPPORTED_TYPES, GGMLType, ggml_type, row_nbytes, supported_type
from kettle.quant import types as quant_types
from kettle.quant.formats import FORMATS
from kettle.quant.types import BLOCK_FIELDS, Field

EXPECTED_SUPPORTED = {
    "F32",
    "F16",
    "BF16",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
}


def test_every_gguf_type_id_is_known_with_the_same_geometry():
    for theirs in gguf.GGMLQuantizationType:
        ours = GGMLType[theirs.name]
        assert int(ours) == int(theirs)
        info = QUANT_INFO[ours]
        assert (info.block_size, info.type_size) == gguf.GGML_QUANT_SIZES[theirs], theirs.name
        assert info.name == theirs.name


def test_supported_set():
    assert {t.name for t in SUPPORTED_TYPES} == EXPECTED_SUPPORTED
    assert all(QUANT_INFO[t].supported == (t.name in EXPECTED_SUPPORTED) for t in GGMLType)


@pytest.mark.parametrize(
    ("name", "cols", "nbytes"),
    [
        ("F32", 3, 12),
        ("BF16", 5, 10),
        ("Q4_0", 64, 36),
        ("Q4_1", 576, 360),
        ("Q8_0", 576, 612),
        ("Q4_K", 1024, 576),
        ("Q6_K", 256, 210),
        ("IQ2_XXS", 256, 66),
        ("Q8_0", 0, 0),
    ],
)
def test_row_nbytes(name, cols, nbytes):
    assert row_nbytes(GGMLType[name], cols) == nbytes
    assert row_nbytes(int(GGMLType[name]), cols) == nbytes  # any int-like id


@pytest.mark.parametrize(("type_id", "cols"), [(GGMLType.Q4_K, 640), (GGMLType.Q8_0, 33), (GGMLType.F32, -1), (99, 32)])
def test_row_nbytes_rejects_with_a_typed_error(type_id, cols):
    with pytest.raises(UnsupportedModel):
        row_nbytes(type_id, cols)


def test_type_lookups():
    assert ggml_type(gguf.GGMLQuantizationType.Q6_K) is GGMLType.Q6_K
    assert supported_type(12) is GGMLType.Q4_K
    with pytest.raises(UnsupportedModel, match="IQ2_XXS is not supported"):
        supported_type(GGMLType.IQ2_XXS)
    with pytest.raises(UnsupportedModel, match="unknown"):
        ggml_type(31)


GGML_STRUCTS = {  # the fields of ggml's block_* structs (ggml-common.h), in order
    "Q4_0": ["d", "qs"],
    "Q4_1": ["d", "m", "qs"],
    "Q5_0": ["d", "qh", "qs"],
    "Q5_1": ["d", "m", "qh", "qs"],
    "Q8_0": ["d", "qs"],
    "Q2_K": ["scales", "qs", "d", "dmin"],
    "Q3_K": ["hmask", "qs", "scales", "d"],
    "Q4_K": ["d", "dmin", "scales", "qs"],
    "Q5_K": ["d", "dmin", "scales", "qh", "qs"],
    "Q6_K": ["ql", "qh", "scales", "d"],
}


def test_block_fields_tile_every_quantized_block():
    assert {t.name: list(fields) for t, fields in BLOCK_FIELDS.items()} == GGML_STRUCTS
    for t, fields in BLOCK_FIELDS.items():
        end = 0
        for f in fields.values():
            assert f.offset == end and f.nbytes > 0, t.name
            end += f.nbytes
        assert end == QUANT_INFO[t].type_size, t.name
    assert all(BLOCK_FIELDS[t]["d"].nbytes == 2 for t in BLOCK_FIELDS)


@pytest.mark.parametrize(
    "fields",
    [
        {"d": Field(0, 2), "qs": Field(3, 16)},  # a gap
        {"d": Field(0, 2), "qs": Field(1, 17)},  # an overlap
        {"d": Field(0, 2), "qs": Field(2, 15)},  # short of the block
    ],
)
def test_a_field_table_that_does_not_tile_is_refused(monkeypatch, fields):
    monkeypatch.setitem(quant_types.BLOCK_FIELDS, GGMLType.Q4_0, fields)
    with pytest.raises(AssertionError, match="Q4_0"):
        quant_types._check_fields()


def test_pack_places_each_field_and_wants_all_of_them():
    fmt = FORMATS[GGMLType.Q4_1]
    d, m, qs = (np.full((3, n), v, np.uint8) for n, v in ((2, 1), (2, 2), (16, 3)))
    blocks = fmt.pack(qs=qs, d=d, m=m)  # by name, any order
    assert blocks.tolist() == [[1, 1, 2, 2] + [3] * 16] * 3
    assert (fmt.field(blocks, "m") == m).all()
    with pytest.raises(ValueError, match="Q4_1"):
        fmt.pack(d=d, qs=qs)
    with pytest.raises(ValueError, match="Q4_1.m"):
        fmt.pack(d=d, m=m[:, :1], qs=qs)


def test_readme_block_layouts_copy_the_table():
    readme = (Path(quant_types.__file__).parent / "README.md").read_text()
    for t, fields in BLOCK_FIELDS.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| {t.name} |"))
        layout = row.split("|")[4]  # e.g. "d @0, m @2, qs[16] @4"
        written = [(m[1], int(m[2])) for m in re.finditer(r"(\w+)(?:\[\d+\])?(?: \([^)]*\))? @(\d+)", layout)]
        assert written == [(name, f.offset) for name, f in fields.items()], t.name

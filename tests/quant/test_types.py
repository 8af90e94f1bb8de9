"""GGML type ids and block geometry against gguf-py's tables."""

from __future__ import annotations

import gguf
import pytest

from kettle.errors import UnsupportedModel
from kettle.quant import QUANT_INFO, SUPPORTED_TYPES, GGMLType, ggml_type, row_nbytes, supported_type

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

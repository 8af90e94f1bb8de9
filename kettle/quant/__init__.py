"""GGML quantized types: block layouts, numpy reference codecs, numba kernels.

    GGMLType, QUANT_INFO, row_nbytes   ids and geometry of every ggml type
    dequantize, quantize               numpy reference (bit-exact with gguf-py)
    QuantMatrix                        a weight matrix kept quantized: matmul, get_rows

Layouts are described in ``formats`` (float types), ``legacy`` (32-element
blocks) and ``kquants`` (256-element super-blocks); kernels in ``kernels``.
"""

import os

# Before numba loads (see _jit): OpenMP workers must sleep, not spin, when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from kettle.quant import kquants, legacy  # noqa: E402,F401  (register their formats)
from kettle.quant.formats import FORMATS, QuantFormat, dequantize, quantize  # noqa: E402
from kettle.quant.kernels import KernelSet, implementations, register, select  # noqa: E402
from kettle.quant.matrix import QuantMatrix  # noqa: E402
from kettle.quant.types import (  # noqa: E402
    QK,
    QK_K,
    QUANT_INFO,
    SUPPORTED_TYPES,
    GGMLType,
    QuantInfo,
    ggml_type,
    row_nbytes,
    supported_type,
)

__all__ = [
    "FORMATS",
    "GGMLType",
    "KernelSet",
    "QK",
    "QK_K",
    "QUANT_INFO",
    "QuantFormat",
    "QuantInfo",
    "QuantMatrix",
    "SUPPORTED_TYPES",
    "dequantize",
    "ggml_type",
    "implementations",
    "quantize",
    "register",
    "row_nbytes",
    "select",
    "supported_type",
]

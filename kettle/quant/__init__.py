"""GGML quantized types: block layouts, numpy reference codecs, numba kernels.

    GGMLType, QUANT_INFO, row_nbytes   ids and geometry of every ggml type
    dequantize, quantize               numpy reference (bit-exact with gguf-py)
    QuantMatrix                        a weight matrix kept quantized: matmul, get_rows
    matmul_many, MatmulGroup           several matrices times one input in one kernel call
    LoraMatrix                         a QuantMatrix with low-rank adapters beside it (LoRA)

Layouts are described in ``formats`` (float types), ``legacy`` (32-element
blocks) and ``kquants`` (256-element super-blocks); kernels in ``kernels``.
"""

from kettle.quant import kquants, legacy, simd  # noqa: F401  (register formats; AVX2 kernels, used where the CPU has them)
from kettle.quant.formats import FORMATS, QuantFormat, dequantize, quantize
from kettle.quant.kernels import KernelSet, implementations, register, select
from kettle.quant.matrix import LoraMatrix, MatmulGroup, QuantMatrix, matmul_many
from kettle.quant.types import (
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
    "QK",
    "QK_K",
    "QUANT_INFO",
    "SUPPORTED_TYPES",
    "GGMLType",
    "KernelSet",
    "QuantFormat",
    "QuantInfo",
    "LoraMatrix",
    "MatmulGroup",
    "QuantMatrix",
    "matmul_many",
    "dequantize",
    "ggml_type",
    "implementations",
    "quantize",
    "register",
    "row_nbytes",
    "select",
    "supported_type",
]

"""The GGUF file format: a bounded, validating, memory-mapped reader.

No math and no model knowledge live here.
"""

from kettle.gguf.reader import GGUFFile, TensorInfo
from kettle.gguf.tensor_types import LAYOUTS, BlockLayout, GGMLType

__all__ = ["GGUFFile", "TensorInfo", "GGMLType", "LAYOUTS", "BlockLayout"]

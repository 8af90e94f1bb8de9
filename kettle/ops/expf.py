"""``exp_f32``: a float32 exponential that LLVM can vectorize without fast-math.

numba lowers ``np.exp`` to a libm call per element, which the loop vectorizer
cannot widen (there is no vector math library behind it), and fast-math is not
an option in kernels whose serial and parallel builds must agree bit for bit.
This one is plain IEEE arithmetic (range reduction by ln 2, a degree-7
polynomial, the power of two built from its bits), so a loop calling it runs
8 lanes at a time, and the vector and scalar code round identically.

Accuracy: within 2 ulp of the correctly rounded result on [-87, 88]; 0 below
-87 (exp(-87) is 1.6e-38), +inf above 88, NaN for NaN. ggml's softmax and GELU
use approximations of the same kind.
"""

from __future__ import annotations

import numpy as np

from kettle.ops._jit import inline
from kettle.quant._jit import bits_to_f32, source_salt

# Kernels that inline exp_f32 capture this, so editing it recompiles them.
EXP_SALT = source_salt("ops/expf.py", "quant/_jit.py")

LOG2E = np.float32(1.4426950408889634)
# ln 2 split in two (Cody-Waite): LN2_HI has few mantissa bits, so n * LN2_HI is exact.
LN2_HI = np.float32(0.693359375)
LN2_LO = np.float32(-2.12194440e-4)
LO, HI = np.float32(-87.0), np.float32(88.0)  # 2**n stays a normal float for n in -126..127
# 1/k! for k = 7..2 (Horner, highest first)
C7, C6, C5 = np.float32(1 / 5040), np.float32(1 / 720), np.float32(1 / 120)
C4, C3, C2 = np.float32(1 / 24), np.float32(1 / 6), np.float32(0.5)
ONE = np.float32(1.0)


@inline
def exp_f32(x):
    """e**x for a float32 ``x`` (see the module docstring for the error bounds)."""
    c = min(max(x, LO), HI)  # NaN passes through min/max as the bound; fixed below
    n = np.floor(c * LOG2E + np.float32(0.5))
    r = (c - n * LN2_HI) - n * LN2_LO  # |r| <= ln2 / 2
    p = C7
    p = p * r + C6
    p = p * r + C5
    p = p * r + C4
    p = p * r + C3
    p = p * r + C2
    p = p * r + ONE
    p = p * r + ONE
    scale = bits_to_f32((np.int32(n) + np.int32(127)) << np.int32(23))  # 2**n
    e = p * scale
    if x < LO:
        e = np.float32(0.0)
    if x > HI:
        e = np.float32(np.inf)
    if x != x:
        e = x
    return e

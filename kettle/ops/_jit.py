"""The one place that sets numba's options for kettle's kernels."""

from __future__ import annotations

import types

import numba

# Kernels: compiled on first use, cached on disk, released GIL so another
# thread can cancel or serve while one computes. error_model="numpy": a float
# division by zero gives inf/nan as numpy's does, not a ZeroDivisionError check
# per division, which also keeps a loop with a division from vectorizing (7x
# slower gates; parallel builds use numpy's model whatever the flag).
kernel = numba.njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
# Reductions whose rounding must not be reassociated (norm statistics).
exact_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")
prange = numba.prange
# Small element-wise helpers inlined into the kernel that calls them (they take its flags).
inline = numba.njit(inline="always")


class Dual:
    """One kernel compiled twice: serial for small batches (waking threads costs
    tens of microseconds, more than a decode step's work), parallel for large.
    Both run the same loop body per row in strict IEEE order, so results do not
    depend on which ran (tests/models checks it bit for bit)."""

    def __init__(self, func, min_parallel_rows: int = 8) -> None:
        # numba's disk cache is keyed by the function's name and source line, not
        # by its ``parallel`` flag: the serial twin needs a name of its own, or it
        # may load the parallel build from the cache (and pay a thread wake-up).
        serial_func = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_serial",
                                         func.__defaults__, func.__closure__)
        serial_func.__qualname__ = func.__qualname__ + "_serial"
        # No fastmath: reassociated (vectorised) reductions and vector exp/tanh
        # would differ between the two builds, and a row must not care which ran.
        self.serial = numba.njit(cache=True, nogil=True, error_model="numpy")(serial_func)
        self.parallel = numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")(func)
        self.min_parallel_rows = min_parallel_rows

    def __call__(self, rows: int, *args):
        fn = self.parallel if rows >= self.min_parallel_rows else self.serial
        return fn(*args)


def dual_kernel(min_parallel_rows: int = 8):
    return lambda func: Dual(func, min_parallel_rows)


def kernels_cached() -> bool:
    """Whether numba's disk cache already holds kettle's kernels on this machine.

    Every model runs the RMS/layer norm kernels, so their cache index stands for
    all: absent, the next model load compiles the kernels (once, ~20 s), which
    the CLI says before it starts.
    """
    from kettle.ops import norm

    cache = getattr(norm._rms_norm, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    if index is None:  # numba's cache is off (NUMBA_DISABLE_JIT) or its layout changed: nothing to say
        return True
    import os

    return os.path.exists(index)


COMPILE_NOTICE = "compiling kettle's kernels for this machine (first run only, about 20 s)..."

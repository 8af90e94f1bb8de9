"""The one warning kettle gives when asked for a GPU: it runs on the CPU.

ctransformers scripts pass ``gpu_layers=50``, mlc scripts ``device="cuda"``, ollama
users ``num_gpu``. kettle accepts them all, so that those scripts run unchanged, and
says once per process (not once per call) that the work stays on the CPU.
"""

from __future__ import annotations

import threading
import warnings

from kettle.errors import InvalidParameter

__all__ = ["CPUOnlyWarning", "GPU_DEVICES", "warn_gpu_request", "check_device", "reset_warning"]

# Device names mlc's ``ChatModule(device=...)`` accepts; any of them but "cpu"/"auto"
# asks for a GPU. ("auto" picks whatever is there: for kettle, the CPU.)
GPU_DEVICES = ("cuda", "metal", "vulkan", "rocm", "opencl")
CPU_DEVICES = ("auto", "cpu")


class CPUOnlyWarning(UserWarning):
    """GPU offload was asked for; kettle has no GPU backend and runs on the CPU."""


class _Once:
    """A flag set by the first warning; ``reset`` exists for tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False

    def first(self) -> bool:
        """True exactly once (until ``reset``)."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    def reset(self) -> None:
        with self._lock:
            self._done = False


_ONCE = _Once()


def reset_warning() -> None:
    """Let the next GPU request warn again (for tests)."""
    _ONCE.reset()


def warn_gpu_request(setting: str, value: object, *, stacklevel: int = 3) -> bool:
    """Warn (once per process) that ``setting=value`` asked for a GPU kettle does not use.

    Call it only when the value does ask for a GPU (``gpu_layers`` other than 0,
    a GPU device name, a GPU ``lib``). Returns True if this call issued the warning.
    """
    if not _ONCE.first():
        return False
    warnings.warn(
        f"{setting}={value!r} asks for GPU offload, but kettle runs models on the CPU "
        "(numpy + numba); continuing on the CPU",
        CPUOnlyWarning,
        stacklevel=stacklevel,
    )
    return True


def check_device(device: object) -> str:
    """Validate an mlc device string (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...).

    Returns the device name without its id; a GPU name warns once. Anything else raises
    ``InvalidParameter`` naming ``device``.
    """
    if not isinstance(device, str):
        raise InvalidParameter("device", device, "expected a string such as 'auto', 'cpu' or 'cuda:0'")
    name, _, index = device.partition(":")
    if index and not index.isdigit():
        raise InvalidParameter("device", device, "the device id after ':' must be a number")
    if name in CPU_DEVICES:
        return name
    if name in GPU_DEVICES:
        warn_gpu_request("device", device, stacklevel=4)
        return name
    known = ", ".join(CPU_DEVICES + GPU_DEVICES)
    raise InvalidParameter("device", device, f"unknown device (known: {known})")

"""ollama's ``options``, split as ollama splits them (``api.Options`` vs its ``Runner`` part).

* :class:`LoadOptions`: fixed while a model is loaded (context window, batch, threads, ...);
  a request asking for different values means a reload.
* :class:`~kettle.sampling.params.SamplingParams`: per request (sampling, stop, num_predict,
  num_keep).

:func:`parse_options` turns the ``options`` object of an API request, layered over a model's
Modelfile ``PARAMETER``\\ s, into both; :func:`coerce_parameter` turns the text of one
``PARAMETER name value`` line into its typed value. Every ollama option name is accepted,
including those ollama removed but clients still send (``tfs_z``, ``mirostat*``,
``penalize_newline``, ``use_mlock``, ``low_vram``, ``f16_kv``, ``logits_all``, ``vocab_only``,
``numa``, ``embedding_only``); the ones that do nothing in kettle are documented as such.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from kettle import config
from kettle.errors import InvalidParameter
from kettle.sampling.fields import (
    Kind, Spec, check_value, coerce_text, normalize_fields, option, specs_of, validate_fields,
)
from kettle.sampling.params import SamplingParams

__all__ = [
    "LoadOptions", "SamplingParams", "parse_options", "coerce_parameter",
    "LOAD_OPTION_NAMES", "SAMPLING_OPTION_NAMES", "OPTION_NAMES",
]


@dataclass(frozen=True)
class LoadOptions:
    """Options bound when a model is loaded (ollama's ``Runner``), validated on construction.

    Two loads can share a model only if their ``LoadOptions`` are equal (the dataclass is
    hashable and compares by value).
    """

    num_ctx: int = option(Kind.INT, 0, lo=0)
    """Context window in tokens; >= 0, default 0 = not set: ``KETTLE_CONTEXT_LENGTH`` (4096).
    Never more than the model's trained context (see :meth:`context_length`)."""

    num_batch: int = option(Kind.INT, 512, lo=1)
    """Most prompt tokens evaluated in one forward pass; >= 1, default 512."""

    num_thread: int = option(Kind.INT, 0, lo=0)
    """Compute threads; >= 0, default 0 = ``KETTLE_NUM_THREAD`` (0 there: the number of cores)."""

    num_gpu: int = option(Kind.INT, -1, lo=-1)
    """Layers to offload to a GPU; >= -1, default -1 = automatic. kettle runs on the CPU, so
    this is accepted and ignored."""

    main_gpu: int = option(Kind.INT, 0, lo=0)
    """GPU for small tensors; >= 0, default 0. Accepted and ignored (CPU only)."""

    use_mmap: bool | None = option(Kind.OPTIONAL_BOOL, None)
    """Memory-map the weights; default None = automatic (kettle always maps GGUF files, so
    false is accepted and has no effect)."""

    use_mlock: bool = option(Kind.BOOL, False)
    """Lock the weights in RAM; default false. Accepted and ignored."""

    numa: bool = option(Kind.BOOL, False)
    """NUMA-aware placement; default false. Accepted and ignored (removed from ollama)."""

    low_vram: bool = option(Kind.BOOL, False)
    """Default false. Accepted and ignored (removed from ollama)."""

    f16_kv: bool = option(Kind.BOOL, True)
    """Half-precision KV cache; default true. Accepted and ignored (removed from ollama)."""

    logits_all: bool = option(Kind.BOOL, False)
    """Default false. Accepted and ignored (removed from ollama)."""

    vocab_only: bool = option(Kind.BOOL, False)
    """Default false. Accepted and ignored (removed from ollama)."""

    embedding_only: bool = option(Kind.BOOL, False)
    """Default false. Accepted and ignored (sent by ollama-python's ``Options``)."""

    def __post_init__(self) -> None:
        normalize_fields(self)

    def validate(self) -> None:
        """Raise ``InvalidParameter`` if any field is out of range (construction already checks)."""
        validate_fields(self)

    def context_length(self, trained: int | None = None) -> int:
        """The context window to allocate: ``num_ctx``, or ``KETTLE_CONTEXT_LENGTH`` when unset,
        capped at ``trained`` (the model's ``context_length``) when given."""
        n = self.num_ctx or config.get_int("KETTLE_CONTEXT_LENGTH")
        if n < 1:
            raise InvalidParameter("KETTLE_CONTEXT_LENGTH", n, "must be a positive integer")
        return min(n, trained) if trained else n

    def thread_count(self) -> int:
        """The compute threads to run on: ``num_thread``, or ``KETTLE_NUM_THREAD`` when unset;
        0 means every core (numba's thread count; the engine caps any value at it)."""
        n = self.num_thread or config.get_int("KETTLE_NUM_THREAD")
        if n < 0:
            raise InvalidParameter("KETTLE_NUM_THREAD", n, "must be 0 (every core) or a positive integer")
        return n


_LOAD_SPECS: dict[str, Spec] = specs_of(LoadOptions)
_SAMPLING_SPECS: dict[str, Spec] = specs_of(SamplingParams)
_SPECS: dict[str, Spec] = {**_LOAD_SPECS, **_SAMPLING_SPECS}
assert len(_SPECS) == len(_LOAD_SPECS) + len(_SAMPLING_SPECS), "an option name is in both types"

LOAD_OPTION_NAMES: frozenset[str] = frozenset(_LOAD_SPECS)
SAMPLING_OPTION_NAMES: frozenset[str] = frozenset(_SAMPLING_SPECS)
OPTION_NAMES: frozenset[str] = frozenset(_SPECS)


def _spec_for(name: object, value: object) -> Spec:
    """The Spec of option ``name``, or ``InvalidParameter`` naming the closest known options."""
    if isinstance(name, str) and name in _SPECS:
        return _SPECS[name]
    close = difflib.get_close_matches(str(name), sorted(_SPECS), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise InvalidParameter(str(name), value, f"unknown option{hint}")


def coerce_parameter(name: str, text: str) -> object:
    """The typed value of a Modelfile ``PARAMETER name text`` line (range-checked).

    Returns an int, float or bool by the option's type; for ``stop`` the single string (the
    Modelfile repeats ``PARAMETER stop`` lines, and the caller collects them into a list).
    Raises ``InvalidParameter`` for an unknown name or a malformed/out-of-range value.
    """
    return coerce_text(name, _spec_for(name, text), text)


def parse_options(mapping: Mapping[str, object] | None,
                  base: Mapping[str, object] | None = None) -> tuple[LoadOptions, SamplingParams]:
    """ollama option names -> (LoadOptions, SamplingParams), ``mapping`` over ``base`` over defaults.

    ``mapping`` is a request's ``options`` object, ``base`` the model's typed Modelfile
    parameters; either may be None. A ``None`` value means "not set" (older LangChain sends
    nulls). Types are strict: a bool is not an integer, a numeric string is not a number, an int
    is fine for a float and an integral float (``40.0``) for an int; ``stop`` is a string or a
    list of strings and a later layer replaces it whole. An unknown name raises
    ``InvalidParameter`` listing close matches.
    """
    values: dict[str, object] = {}
    for layer_name, layer in (("parameters", base), ("options", mapping)):
        if layer is None:
            continue
        if not isinstance(layer, Mapping):
            raise InvalidParameter(layer_name, layer, "expected an object of option names to values")
        for name, value in layer.items():
            spec = _spec_for(name, value)
            if value is not None:
                values[name] = check_value(name, spec, value)
    load = LoadOptions(**{k: v for k, v in values.items() if k in _LOAD_SPECS})
    sampling = SamplingParams(**{k: v for k, v in values.items() if k in _SAMPLING_SPECS})
    return load, sampling

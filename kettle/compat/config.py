"""ctransformers' ``Config``: its fields, defaults and ranges, and their ollama names.

``Config`` is mutable, as in ctransformers (scripts set ``llm.config.max_new_tokens = 64``);
it is validated on construction and again whenever an ``LLM`` call uses it
(``dataclasses.replace``), so a bad value raises ``InvalidParameter`` naming the
ctransformers field, never a kettle name the script did not write.

:data:`OPTION_NAMES` is the translation to kettle's (ollama's) option names; :func:`to_options`
applies it, turning ctransformers' conventions for "no limit / automatic" into ollama's.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from kettle.errors import InvalidParameter
from kettle.sampling.fields import Kind, Spec, check_value, option, specs_of

__all__ = ["Config", "OPTION_NAMES", "LOAD_FIELDS", "to_options", "make_config"]

_STOP_SPEC = Spec(Kind.STRINGS)


@dataclass
class Config:
    """Defaults of every generation call of an ``LLM`` (ctransformers 0.2.27's fields)."""

    top_k: int = option(Kind.INT, 40)
    """Keep the k most likely tokens; <= 0 keeps them all. Default 40."""

    top_p: float = option(Kind.FLOAT, 0.95, lo=0.0, hi=1.0)
    """Nucleus sampling mass in [0, 1]; 1 disables it. Default 0.95."""

    temperature: float = option(Kind.FLOAT, 0.8)
    """Softmax temperature; <= 0 is greedy (argmax). Default 0.8."""

    repetition_penalty: float = option(Kind.FLOAT, 1.1, gt=0.0)
    """Penalty (> 0) on tokens among the last ``last_n_tokens``; 1 is off. Default 1.1."""

    last_n_tokens: int = option(Kind.INT, 64)
    """How many recent tokens the penalty looks at; negative: the whole context. Default 64."""

    seed: int = option(Kind.INT, -1)
    """Random seed; negative: a fresh one per generation. Default -1."""

    batch_size: int = option(Kind.INT, 8, lo=1)
    """Prompt tokens evaluated per forward pass (kettle's num_batch); >= 1. Default 8."""

    threads: int = option(Kind.INT, -1)
    """Compute threads; <= 0: every core (kettle's num_thread 0). Default -1."""

    max_new_tokens: int = option(Kind.INT, 256, lo=0)
    """Most tokens a call generates; >= 0. Default 256."""

    stop: tuple[str, ...] | None = None
    """Stop strings: text from the first one on is not returned. Default None."""

    stream: bool = option(Kind.BOOL, False)
    """``llm(prompt)`` returns a generator of text pieces instead of a string. Default False."""

    reset: bool = option(Kind.BOOL, True)
    """True: reuse the longest common prefix of the context; False: continue the context."""

    context_length: int = option(Kind.INT, -1)
    """Context window (kettle's num_ctx); <= 0: kettle's default (KETTLE_CONTEXT_LENGTH)."""

    gpu_layers: int = option(Kind.INT, 0, lo=-1)
    """Layers to offload to a GPU (-1: all). kettle runs on the CPU: nonzero warns once."""

    mmap: bool = option(Kind.BOOL, True)
    """Memory-map the weights; kettle always does, so False has no effect."""

    mlock: bool = option(Kind.BOOL, False)
    """Lock the weights in RAM; accepted, no effect."""

    def __post_init__(self) -> None:
        for name, spec in specs_of(Config).items():
            object.__setattr__(self, name, check_value(name, spec, getattr(self, name)))
        if self.stop is not None:
            self.stop = check_value("stop", _STOP_SPEC, self.stop)


# ctransformers field -> kettle (ollama) option, and the conversion of its value
# (None: leave the option unset). Fields missing here have no kettle option: stream and
# reset shape the call itself; mmap and mlock have no effect.
OPTION_NAMES: dict[str, str] = {
    "top_k": "top_k",
    "top_p": "top_p",
    "temperature": "temperature",
    "repetition_penalty": "repeat_penalty",
    "last_n_tokens": "repeat_last_n",
    "seed": "seed",
    "max_new_tokens": "num_predict",
    "stop": "stop",
    "batch_size": "num_batch",
    "threads": "num_thread",
    "context_length": "num_ctx",
    "gpu_layers": "num_gpu",
}
LOAD_FIELDS = frozenset({"batch_size", "threads", "context_length", "gpu_layers"})

_CONVERT: dict[str, Callable[[Any], Any]] = {
    "top_k": lambda v: max(v, 0),  # ctransformers: <= 0 keeps all; ollama: 0
    "last_n_tokens": lambda v: -1 if v < 0 else v,  # whole context: ollama -1
    "seed": lambda v: -1 if v < 0 else v,
    "threads": lambda v: max(v, 0),  # automatic: ollama 0
    "context_length": lambda v: v if v > 0 else None,
    "max_new_tokens": lambda v: v if v > 0 else None,  # 0 (nothing) is the LLM loop's to honour
    "stop": lambda v: list(v) if v else None,
}


def to_options(config: Config, *, sampling: bool) -> dict[str, Any]:
    """Ollama-named options from ``config``: the per-call (sampling) ones, or the load-time
    ones (``sampling=False``), as keyword arguments for ``parse_options`` / ``kettle.load``."""
    out: dict[str, Any] = {}
    for field, option_name in OPTION_NAMES.items():
        if (field in LOAD_FIELDS) == sampling:
            continue
        value = getattr(config, field)
        value = _CONVERT.get(field, lambda v: v)(value)
        if value is not None:
            out[option_name] = value
    return out


def _check_names(fields: Mapping[str, Any]) -> None:
    """``InvalidParameter`` naming the first key that is not a ``Config`` field."""
    known = sorted(f.name for f in dataclasses.fields(Config))
    for key, value in fields.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=2)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise InvalidParameter(str(key), value, f"unknown ctransformers config field (known: {', '.join(known)}){hint}")


def make_config(config: object = None, **fields: Any) -> Config:
    """A new ``Config``: ``config`` (a ``Config``, a mapping of its fields, or None for the
    defaults) with ``fields`` over it; unknown names and bad values raise ``InvalidParameter``."""
    if config is None:
        base = Config()
    elif isinstance(config, Config):
        base = config
    elif isinstance(config, Mapping):
        _check_names(config)
        base = Config(**config)
    else:
        raise InvalidParameter("config", config, "expected a Config or a mapping of its fields")
    _check_names(fields)
    return dataclasses.replace(base, **fields)

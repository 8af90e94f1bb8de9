"""Per-request generation options: :class:`SamplingParams`.

These are the fields of ollama's ``api.Options`` that are *not* in its ``Runner`` (load-time)
part: they may change with every request without reloading the model. Defaults are ollama's
``api.DefaultOptions()``; ``repeat_penalty`` follows ollama after May 2025 (1.0, i.e. off),
which keeps ``temperature 0`` identical to llama.cpp's plain greedy decoding.
Load-time options are :class:`kettle.options.LoadOptions`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kettle.errors import InvalidParameter
from kettle.sampling.fields import Kind, normalize_fields, option, validate_fields
from kettle.sampling.logprobs import check_top

# ollama caps an unlimited num_predict at this many context windows (llm/server.go).
UNLIMITED_PREDICT_CONTEXTS = 10


class Mirostat(enum.IntEnum):
    """Values of ``SamplingParams.mirostat``."""

    OFF = 0
    V1 = 1
    V2 = 2


class NumPredict(enum.IntEnum):
    """Special values of ``SamplingParams.num_predict`` (positive values are a token count)."""

    UNLIMITED = -1
    FILL_CONTEXT = -2


@dataclass(frozen=True)
class SamplingParams:
    """Options of one generation request, validated on construction (frozen).

    Construct with keywords; ints are accepted for float fields and a str or list for ``stop``
    (normalized to a tuple). Any invalid field raises ``InvalidParameter(name, value, reason)``,
    which the server answers with HTTP 400. ``dataclasses.replace`` re-validates.
    """

    temperature: float = option(Kind.FLOAT, 0.8)
    """Softmax temperature; any finite number, default 0.8. ``<= 0`` means greedy decoding
    (argmax, ties to the lowest token id) and the random generator is never used."""

    top_k: int = option(Kind.INT, 40, lo=0)
    """Keep only the k most likely tokens; >= 0, default 40; 0 disables the filter."""

    top_p: float = option(Kind.FLOAT, 0.9, lo=0.0, hi=1.0)
    """Nucleus sampling: keep the smallest set of most likely tokens whose probability sum
    reaches top_p; in [0, 1], default 0.9; 1 disables it, 0 keeps only the most likely token."""

    min_p: float = option(Kind.FLOAT, 0.0, lo=0.0, hi=1.0)
    """Drop tokens whose probability is below min_p times the top token's; in [0, 1],
    default 0.0 (disabled)."""

    typical_p: float = option(Kind.FLOAT, 1.0, lo=0.0, hi=1.0)
    """Locally typical sampling: keep the tokens whose surprise is closest to the entropy until
    their mass exceeds typical_p; in [0, 1], default 1.0 (disabled)."""

    tfs_z: float = option(Kind.FLOAT, 1.0, lo=0.0)
    """Tail-free sampling cut-off on the normalized second derivative of the sorted
    probabilities; >= 0, default 1.0; any value >= 1 disables it. (Removed from ollama in
    May 2025 and from llama.cpp; kept because clients still send it.)"""

    repeat_penalty: float = option(Kind.FLOAT, 1.0, gt=0.0)
    """Penalty for tokens seen in the last ``repeat_last_n`` tokens: a positive logit is divided
    by it, a negative one multiplied; > 0, default 1.0 (off; ollama used 1.1 until May 2025)."""

    repeat_last_n: int = option(Kind.INT, 64, lo=-1)
    """How many of the latest tokens the three penalties look at; >= -1, default 64;
    0 disables the penalties, -1 means the whole context (every token in the history)."""

    presence_penalty: float = option(Kind.FLOAT, 0.0)
    """Subtracted once from the logit of every token present in the penalty window; any finite
    number, default 0.0 (off)."""

    frequency_penalty: float = option(Kind.FLOAT, 0.0)
    """Subtracted from a token's logit once per occurrence in the penalty window; any finite
    number, default 0.0 (off)."""

    penalize_newline: bool = option(Kind.BOOL, True)
    """Whether the newline token is subject to the penalties; default true. False needs the
    model's newline token id (``Sampler(newline_id=...)``)."""

    mirostat: int = option(Kind.INT, Mirostat.OFF, choices=tuple(Mirostat))
    """Mirostat adaptive sampling: 0 off (default), 1 Mirostat, 2 Mirostat 2.0. When on, it
    replaces top_k/tfs_z/typical_p/top_p/min_p (temperature still applies first)."""

    mirostat_tau: float = option(Kind.FLOAT, 5.0, lo=0.0)
    """Mirostat target surprise (entropy) in bits; >= 0, default 5.0. Lower is more focused."""

    mirostat_eta: float = option(Kind.FLOAT, 0.1, lo=0.0)
    """Mirostat learning rate; >= 0, default 0.1; 0 never adapts."""

    seed: int = option(Kind.INT, -1, lo=-(2**63), hi=2**63 - 1)
    """Random seed; any 64-bit signed integer (as OpenAI accepts), default -1: a fresh random
    seed per request; every other value is a fixed seed. The same seed with the same logits
    gives the same tokens."""

    stop: tuple[str, ...] = option(Kind.STRINGS, ())
    """Stop strings: generation ends where any of them appears, and the text from it on is not
    returned; default none (the model's template usually adds some). No empty strings."""

    num_predict: int = option(Kind.INT, NumPredict.UNLIMITED, lo=NumPredict.FILL_CONTEXT)
    """Most tokens to generate; >= -2, default -1. -1 (and 0, as in ollama) mean no limit but
    the engine's cap of 10 context windows; -2 means until the context window is full."""

    num_keep: int = option(Kind.INT, 4, lo=-1)
    """Prompt tokens kept at the start of the window when the context is shifted; >= -1,
    default 4; -1 keeps the whole prompt. (Per-request in ollama, so it lives here.)"""

    draft_num_predict: int = option(Kind.INT, 8, lo=0, hi=64)
    """Speculative decoding (ollama's name): at most this many tokens drafted per step by
    prompt lookup (the continuation of the latest earlier occurrence of the last few
    tokens) and checked in the same forward pass; in [0, 64], default 8; 0 turns it off.
    The output is the same as without it, token for token (greedy or sampled)."""

    # Not options (no Modelfile PARAMETER, not in a request's ``options``): what to report, set
    # from a request's top-level ``logprobs`` / ``top_logprobs`` fields.
    logprobs: int | None = None
    """Record each generated token's log probability and this many of the most likely
    alternatives (0..20) in the distribution the sampler drew from (see
    :mod:`kettle.sampling.logprobs`); None (default) records nothing and costs nothing."""

    shift: bool = True
    """When the context window fills during generation, shift it (ollama's ``shift``, on by
    default): keep the first ``num_keep`` tokens, leave out half of the rest (the oldest) and
    go on; False ends the answer with ``done_reason: "length"`` instead. The kept tokens are
    evaluated again at their new positions, so what follows is exactly what a prompt of the
    shifted tokens would give (llama.cpp instead re-rotates the cached keys)."""

    prompt_logprobs: bool = False
    """Also record the prompt tokens' log probabilities (each from the raw logits of the position
    before it, with ``logprobs`` alternatives); the whole prompt is evaluated again (no cache
    reuse). Needs ``logprobs``."""

    def __post_init__(self) -> None:
        normalize_fields(self)
        object.__setattr__(self, "mirostat", Mirostat(self.mirostat))
        if self.logprobs is not None:
            check_top(self.logprobs, "logprobs")
        if self.prompt_logprobs and self.logprobs is None:
            raise InvalidParameter("prompt_logprobs", True, "needs logprobs (a number of alternatives, 0..20)")

    def validate(self) -> None:
        """Raise ``InvalidParameter`` if any field is out of range (construction already checks;
        this is for callers that want the check to be explicit)."""
        validate_fields(self)

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic argmax (``temperature <= 0``)."""
        return self.temperature <= 0.0

    def token_limit(self, num_ctx: int, prompt_tokens: int = 0) -> int:
        """The number of new tokens this request may generate, resolving -1/0/-2 as ollama does.

        ``num_ctx`` is the loaded context window, ``prompt_tokens`` the prompt's length.
        """
        if num_ctx <= 0:
            raise InvalidParameter("num_ctx", num_ctx, "must be positive")
        cap = UNLIMITED_PREDICT_CONTEXTS * num_ctx
        if self.num_predict == NumPredict.FILL_CONTEXT:
            return max(num_ctx - prompt_tokens, 0)
        if self.num_predict > 0:
            return min(self.num_predict, cap)
        return cap

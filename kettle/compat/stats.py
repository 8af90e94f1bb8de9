"""mlc's runtime statistics: prefill and decode throughput over a chat session.

mlc's C++ ``RuntimeStatsText`` prints ``prefill: 123.4 tok/s, decode: 45.6 tok/s`` (one
decimal, fixed), totals since the last ``reset_chat``. Its prefill step evaluates the prompt
*and samples the first token*; each decode step evaluates one token and samples the next.
kettle's per-request ``Stats`` count the same way: ``eval_count`` includes the token sampled
from the prompt's logits, and ``eval_duration`` covers only the forward passes after it, so a
turn contributes ``eval_count - 1`` decode steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from kettle.engine.batch import Stats

__all__ = ["RuntimeStats"]

NS_PER_S = 1_000_000_000


def _rate(tokens: int, ns: int) -> float:
    """Tokens per second; 0.0 when nothing was timed (mlc would print nan)."""
    return tokens * NS_PER_S / ns if ns > 0 else 0.0


@dataclass
class RuntimeStats:
    """Totals since the last ``reset``: tokens and nanoseconds per phase."""

    prefill_tokens: int = 0
    prefill_ns: int = 0
    decode_tokens: int = 0
    decode_ns: int = 0

    def add(self, stats: Stats) -> None:
        """Add one finished request's ``kettle.Stats``."""
        # the tokens prefill computed (the cached prefix took no time), over the time it took
        self.prefill_tokens += stats.prompt_eval_count - stats.prompt_cached_count
        self.prefill_ns += stats.prompt_eval_duration
        self.decode_tokens += max(stats.eval_count - 1, 0)
        self.decode_ns += stats.eval_duration

    def reset(self) -> None:
        self.prefill_tokens = self.prefill_ns = self.decode_tokens = self.decode_ns = 0

    @property
    def prefill_rate(self) -> float:
        return _rate(self.prefill_tokens, self.prefill_ns)

    @property
    def decode_rate(self) -> float:
        return _rate(self.decode_tokens, self.decode_ns)

    def text(self, verbose: bool = False) -> str:
        """mlc's ``stats()`` string; ``verbose`` adds total tokens and time per phase."""
        if not verbose:
            return f"prefill: {self.prefill_rate:.1f} tok/s, decode: {self.decode_rate:.1f} tok/s"
        return (
            "----------- prefill -----------\n"
            f"throughput: {self.prefill_rate:.1f} tok/s\n"
            f"total tokens: {self.prefill_tokens} tok\n"
            f"total time: {self.prefill_ns / NS_PER_S:.1f} s\n"
            "------------ decode ------------\n"
            f"throughput: {self.decode_rate:.1f} tok/s\n"
            f"total tokens: {self.decode_tokens} tok\n"
            f"total time: {self.decode_ns / NS_PER_S:.1f} s\n"
        )

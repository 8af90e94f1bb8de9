"""Speculative decoding with a draft model: a smaller model of the same vocabulary proposes
the next tokens, and the main model checks them in the forward pass it makes anyway
(llama.cpp's ``--model-draft``; the Modelfile's ``DRAFT``; ``kettle.load(..., draft=...)``).

    drafter = Drafter(runner, vocabulary)          # the draft model's own Runner and KV cache
    tokens = drafter.propose(slot, context, k)     # up to k greedy tokens after ``context``

The draft model keeps one KV slot per main slot, in step with what the main model holds: a
proposal first drops the draft cache back to its common prefix with ``context`` (the main
cache's tokens and the token about to be evaluated) and evaluates the rest, so the draft
tokens the main model kept are already there, and one it did not keep is overwritten. It
proposes greedily and stops early when its own most likely token has less than ``P_MIN``
probability (llama.cpp's ``--draft-p-min``): an unsure draft mostly wastes the main model's
work. Whatever it proposes, the main model's output is its own: the engine keeps a drafted
token only where the main model's sampler chose it (``BatchEngine._verify``), and its
kernels are batch-invariant, so greedy text is identical with or without a draft model.

The two vocabularies must be the same tokens (the draft model's ids are fed to the main
model): ``check_vocabularies`` compares them as llama.cpp does (``common_speculative_are_
compatible``: same type and special tokens, sizes within ``VOCAB_SLACK``, the same text for
every token id both have) and raises ``UnsupportedModel`` naming the first difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kettle.engine.runner import Runner
from kettle.errors import UnsupportedModel
from kettle.tokenizer import Tokenizer

P_MIN = 0.75  # the least probability a draft token needs (llama.cpp's default draft p_min)
VOCAB_SLACK = 128  # the most the two vocabularies' sizes may differ (llama.cpp's)


def check_vocabularies(main: Tokenizer, draft: Tokenizer, draft_name: str) -> None:
    """``UnsupportedModel`` unless ``draft``'s tokens are ``main``'s (see the module doc)."""
    def refuse(what: str) -> UnsupportedModel:
        return UnsupportedModel(f"draft model {draft_name}: {what}; a draft model must share the main model's "
                                "tokenizer (the same family, e.g. a smaller size of it)")

    if main.type != draft.type:
        raise refuse(f"its vocabulary is {draft.type.name}, the main model's {main.type.name}")
    for role in ("bos", "eos"):
        if main.special_id(role) != draft.special_id(role):
            raise refuse(f"its {role} token is {draft.special_id(role)}, the main model's {main.special_id(role)}")
    if abs(main.vocab_size - draft.vocab_size) > VOCAB_SLACK:
        raise refuse(f"{draft.vocab_size} tokens against the main model's {main.vocab_size}")
    for i in range(min(main.vocab_size, draft.vocab_size)):
        if main.token_to_piece(i) != draft.token_to_piece(i):
            raise refuse(f"token {i} is {draft.token_to_piece(i)!r}, the main model's {main.token_to_piece(i)!r}")


class Drafter:
    """A draft model's runner and the proposals it makes (see the module doc)."""

    def __init__(self, runner: Runner, n_vocab: int) -> None:
        self.runner = runner
        self.n_vocab = n_vocab  # the main model's: a draft id beyond it is never proposed

    def propose(self, slot: int, context: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens the draft model expects after ``context`` (greedy, stopping at the
        first whose probability is below ``P_MIN``); [] when ``k`` < 1 or nothing is sure enough."""
        if k < 1 or not context:
            return []
        cache = self.runner.cache
        held = min(cache.common_prefix(slot, list(context)), len(context) - 1)  # at least one to evaluate
        if len(context) + k > self.runner.n_ctx:
            return []
        cache.truncate(slot, held)
        rest = list(context[held:])
        logits = self.runner.forward(rest, range(held, held + len(rest)), [slot] * len(rest))[-1]
        out: list[int] = []
        position = len(context)
        while True:
            token = int(np.argmax(logits))
            top = logits[token]
            p = 1.0 / float(np.sum(np.exp(logits - top)))  # softmax at the argmax
            if p < P_MIN or token >= self.n_vocab:
                break
            out.append(token)
            if len(out) == k:
                break
            logits = self.runner.forward([token], [position], [slot])[0]
            position += 1
        return out

"""The mixture-of-experts feed-forward (qwen2moe, qwen3moe), as llama.cpp's
``build_moe_ffn`` computes it:

    probs   = softmax(h Wrouter)                     (n, n_expert), float32
    chosen  = the n_expert_used largest probs         per token, largest first
    weights = probs[chosen] (/ their sum, clamped at 2^-14, when norm_weights)
    out     = sum_j weights[j] * down_e(act(gate_e h) * up_e h),  e = chosen[j]
    out    += shared(h) (* sigmoid(h . w_shared_gate))   where the file has a shared expert

Each expert's three matrices are read for the tokens routed to it and for no
others; an expert no token chose is never touched. A token's result depends
on its own row only (each expert's matmul is row-independent, and the sum runs
over its chosen experts in order), so batching never changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kettle.models.base import W, BoundWeights
from kettle.quant import MatmulGroup

if TYPE_CHECKING:
    from kettle.models.transformer import TransformerConfig

EXPERT_WEIGHTS = (
    W("blk.{i}.ffn_gate_inp.weight", ("n_expert", "n_embd")),
    W("blk.{i}.ffn_gate_exps.weight", ("n_expert", "n_ff_exp", "n_embd")),
    W("blk.{i}.ffn_up_exps.weight", ("n_expert", "n_ff_exp", "n_embd")),
    W("blk.{i}.ffn_down_exps.weight", ("n_expert", "n_embd", "n_ff_exp")),
)
SHARED_EXPERT_WEIGHTS = (
    W("blk.{i}.ffn_gate_shexp.weight", ("n_ff_shexp", "n_embd")),
    W("blk.{i}.ffn_up_shexp.weight", ("n_ff_shexp", "n_embd")),
    W("blk.{i}.ffn_down_shexp.weight", ("n_embd", "n_ff_shexp")),
)
SHARED_EXPERT_GATE = W("blk.{i}.ffn_gate_inp_shexp.weight", ("n_embd",))
WEIGHTS_SUM_MIN = np.float32(6.103515625e-5)  # llama.cpp clamps the sum of the chosen weights here


class MoEFeedForward:
    """One layer's experts; ``__call__`` h (n, n_embd) -> (n, n_embd)."""

    def __init__(self, cfg: TransformerConfig, w: BoundWeights, prefix: str,
                 act: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        moe = cfg.moe
        if moe is None:
            raise ValueError(f"{cfg.arch}: a feed-forward of experts needs a MoEConfig")
        self.moe = moe
        self.act = act
        self.router = w[prefix + "ffn_gate_inp.weight"]  # QuantMatrix (n_expert, n_embd)
        gate, up, self.down = (w[prefix + f"ffn_{m}_exps.weight"] for m in ("gate", "up", "down"))  # Experts
        self.gate_up = [MatmulGroup((gate[e], up[e])) for e in range(moe.n_expert)]
        self.shared = None
        if moe.n_ff_shexp:
            s_gate, s_up = w[prefix + "ffn_gate_shexp.weight"], w[prefix + "ffn_up_shexp.weight"]
            self.shared = (MatmulGroup((s_gate, s_up)), w[prefix + "ffn_down_shexp.weight"])
        self.shared_gate = w[prefix + "ffn_gate_inp_shexp.weight"] if moe.shared_gate else None  # (n_embd,)

    def route(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """h (n, n_embd) -> chosen experts (n, k) int64 and their weights (n, k) float32."""
        logits = self.router.matmul(h)  # (n, n_expert)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        k = self.moe.n_expert_used
        chosen = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # (n, k), largest first
        weights = np.take_along_axis(probs, chosen, axis=1)  # (n, k)
        if self.moe.norm_weights:
            weights /= np.maximum(weights.sum(axis=1, keepdims=True), WEIGHTS_SUM_MIN)
        return chosen, weights

    def __call__(self, h: np.ndarray) -> np.ndarray:
        n = h.shape[0]
        chosen, weights = self.route(h)
        k = chosen.shape[1]
        parts = np.zeros((k, n, h.shape[1]), dtype=np.float32)  # expert j's weighted output per token
        for e in np.unique(chosen).tolist():
            rows, slot = np.nonzero(chosen == e)  # the tokens that chose e, and as which of their k
            x = np.ascontiguousarray(h[rows])
            gate, up = self.gate_up[e](x)  # 2 x (m, n_ff_exp)
            y = self.down[e].matmul(self.act(gate, up))  # (m, n_embd)
            y *= weights[rows, slot][:, None]
            parts[slot, rows] = y
        out = parts[0].copy()
        for j in range(1, k):  # in the order the router ranked them, as llama.cpp adds them
            out += parts[j]
        if self.shared is not None:
            group, down = self.shared
            gate, up = group(h)
            y = down.matmul(self.act(gate, up))  # (n, n_embd)
            if self.shared_gate is not None:
                g = np.sum(h * self.shared_gate, axis=1, keepdims=True)  # (n, 1), row by row
                y *= 1.0 / (1.0 + np.exp(-g))
            out += y
        return out

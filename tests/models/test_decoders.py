"""What the decoder architectures promise beyond agreeing with llama.cpp:

- every weight an architecture declares is read by its computation (perturb one
  tensor of the file: the logits change);
- a mixture of experts reads the matrices of the experts its router chose and
  no others (an unchosen expert filled with NaN changes nothing);
- rope: the factors, YaRN and LongRoPE do what llama.cpp's ggml_rope_ext does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kettle.engine.runner import Runner
from kettle.gguf import GGUFFile
from kettle.models import load_model
from kettle.models.transformer import ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT, ROPE_FREQS
from kettle.ops import Rope, rope_table
from tests.gguf_factory import write_gguf
from tests.models.decoder_factory import MODELS, _weight_specs, decoder_parts

IDS = [5, 17, 33, 8, 71, 44, 20, 9, 63, 12, 90, 41]
PERTURBED = [name for name, (_, opts) in MODELS.items() if not opts.get("qtype")]


def _logits(path: Path, n_ctx: int, ids: list[int] = IDS) -> np.ndarray:
    with GGUFFile(path) as f:
        model = load_model(f)
        n = len(ids)
        return Runner(model, n_ctx=n_ctx).forward(ids, range(n), [0] * n, outputs=range(n))


def _both_contexts(path: Path) -> np.ndarray:
    # a short and a long context: LongRoPE reads its short factors in one, its long ones in the other
    return np.concatenate([_logits(path, 16), _logits(path, 512)])


@pytest.mark.parametrize("name", PERTURBED)
def test_every_tensor_in_the_file_is_read(name, tmp_path):
    meta, tensors = decoder_parts(name)
    base = _both_contexts(write_gguf(tmp_path / "base.gguf", meta, tensors))
    rng = np.random.default_rng(0)
    checked = [t for t in tensors if not t.startswith("blk.") or t.startswith("blk.0.")]
    for tname in checked:
        original = tensors[tname]
        changed = original * (1.5 + rng.random(original.shape).astype(np.float32))  # every element moves
        path = write_gguf(tmp_path / "p.gguf", meta, {**tensors, tname: changed.astype(np.float32)})
        diff = np.abs(_both_contexts(path) - base).max()
        assert diff > 1e-4, f"{name}: changing '{tname}' changed nothing: the weight is not read"


def test_the_models_hold_every_declared_weight():
    """Each weight any architecture declares is in some factory model, so the test above reads it."""
    written = set()
    declared = {ROPE_FREQS, ROPE_FACTORS_SHORT, ROPE_FACTORS_LONG}
    for name in PERTURBED:
        arch, opts = MODELS[name]
        written |= {t.replace("blk.0.", "blk.{i}.") for t in decoder_parts(name)[1] if not t.startswith("blk.1")}
        declared |= {w.name for w in _weight_specs(arch, opts)}
    from kettle.models import phi3

    declared |= {w.name for w in phi3.FUSED_QKV}
    assert declared - written == set()


class _Spy:
    """Records which expert's matrices were used."""

    def __init__(self, inner, e: int, log: set[int]) -> None:
        self.inner, self.e, self.log = inner, e, log

    def __call__(self, x):
        self.log.add(self.e)
        return self.inner(x)

    def matmul(self, x):
        self.log.add(self.e)
        return self.inner.matmul(x)


def _spy_on_experts(model):
    used, chosen = [], []
    for block in model.blocks:
        ffn = block.ffn
        log: set[int] = set()
        picks: set[int] = set()
        ffn.gate_up = [_Spy(g, e, log) for e, g in enumerate(ffn.gate_up)]
        ffn.down = [_Spy(d, e, log) for e, d in enumerate(ffn.down.experts)]
        route = ffn.route

        def recording_route(h, route=route, picks=picks):
            c, w = route(h)
            picks.update(c.ravel().tolist())
            return c, w

        ffn.route = recording_route
        used.append(log)
        chosen.append(picks)
    return used, chosen


@pytest.mark.parametrize("name", ["qwen3moe", "qwen2moe", "mixtral"])
def test_only_the_chosen_experts_are_read(name, tmp_path):
    meta, tensors = decoder_parts(name)
    path = write_gguf(tmp_path / "m.gguf", meta, tensors)
    ids = IDS[:1]  # one token: expert_used_count of the experts, per layer
    with GGUFFile(path) as f:
        model = load_model(f)
        used, chosen = _spy_on_experts(model)
        want = Runner(model, n_ctx=16).forward(ids, [0], [0])
    n_expert, k = model.config.moe.n_expert, model.config.moe.n_expert_used
    for layer_used, layer_chosen in zip(used, chosen):
        assert layer_used == layer_chosen and len(layer_used) == k < n_expert
    # An expert no token chose may hold anything: NaN in all its matrices changes no logit.
    poisoned = dict(tensors)
    for i, layer_used in enumerate(used):
        for m in ("gate", "up", "down"):
            t = poisoned[f"blk.{i}.ffn_{m}_exps.weight"].copy()
            for e in set(range(n_expert)) - layer_used:
                t[e] = np.nan
            poisoned[f"blk.{i}.ffn_{m}_exps.weight"] = t
    got = _logits(write_gguf(tmp_path / "nan.gguf", meta, poisoned), 16, ids)
    np.testing.assert_array_equal(got, want)


def test_a_llama_window_is_applied_on_every_layer(tmp_path):
    """Mistral 7B v0.1's llama.attention.sliding_window: positions within the window see what
    full attention sees; later ones do not (llama.cpp's llama graph ignores the key)."""
    meta, tensors = decoder_parts("mistral-swa")
    ids = (IDS * 2)[:20]
    windowed = _logits(write_gguf(tmp_path / "w.gguf", meta, tensors), 32, ids)
    del meta["llama.attention.sliding_window"]
    full = _logits(write_gguf(tmp_path / "f.gguf", meta, tensors), 32, ids)
    np.testing.assert_array_equal(windowed[:8], full[:8])
    assert np.abs(windowed[8:] - full[8:]).max(axis=1).min() > 1e-4


def test_quantized_experts(tmp_path):
    """Q8_0 expert tensors (3-D, block-quantized): each expert's rows decode as its own matrix."""
    from tests.models.reference import reference_logits

    meta, tensors = decoder_parts("qwen3moe", qtype="Q8_0")
    assert tensors["blk.0.ffn_up_exps.weight"][0].ndim == 3
    with GGUFFile(write_gguf(tmp_path / "q8.gguf", meta, tensors)) as f:
        model = load_model(f)
        got = Runner(model, n_ctx=32).forward(IDS, range(len(IDS)), [0] * len(IDS), outputs=range(len(IDS)))
        want = reference_logits(model, IDS)
    assert np.abs(got - want).max() / np.abs(want).max() < 6e-2  # int8 activations, as llama.cpp's


def test_rope_factors_divide_the_frequencies():
    pos = np.arange(5, dtype=np.int32)
    factors = np.array([1.0, 2.0, 4.0, 8.0], np.float32)
    cos, sin = rope_table(pos, 8, Rope(10000.0), factors)
    theta = pos[:, None] * (10000.0 ** (-np.arange(4) / 4) / factors)[None, :]
    np.testing.assert_allclose(cos, np.cos(theta), atol=1e-6)
    np.testing.assert_allclose(sin, np.sin(theta), atol=1e-6)


def test_yarn_keeps_high_frequencies_and_interpolates_low_ones():
    """Past the correction dims YaRN interpolates (theta / factor); before them it extrapolates
    (theta unchanged); cos and sin grow by 1 + 0.1 ln(factor) (times the attention factor
    llama.cpp passes)."""
    pos = np.array([7], np.int32)
    n_rot, base, factor = 64, 10000.0, 4.0
    rope = Rope(base, freq_scale=1 / factor, ext_factor=1.0, attn_factor=1.0, n_ctx_orig=4096)  # dims 10..23
    cos, sin = rope_table(pos, n_rot, rope)
    m = 1 + 0.1 * np.log(factor)
    theta = 7 * base ** (-2.0 * np.arange(n_rot // 2) / n_rot)
    for got, fn in ((cos[0], np.cos), (sin[0], np.sin)):
        np.testing.assert_allclose(got[:10], m * fn(theta[:10]), atol=1e-5)  # extrapolated
        np.testing.assert_allclose(got[23:], m * fn(theta[23:] / factor), atol=1e-5)  # interpolated
    np.testing.assert_allclose(np.hypot(cos[0], sin[0]), m, rtol=1e-6)


def test_longrope_picks_factors_by_the_context():
    rope = Rope(10000.0, n_ctx_orig=32, factors="short", long_factors="long")
    assert rope.factor_name(32) == "short" and rope.factor_name(33) == "long"


HOSTILE = {
    # case: (model, metadata changes (None removes), the key the error must name)
    "rms eps missing": ("qwen3", {"attention.layer_norm_rms_epsilon": None}, "qwen3.attention.layer_norm_rms_epsilon"),
    "context missing": ("phi3", {"context_length": None}, "phi3.context_length"),
    "no expert count": ("qwen3moe", {"expert_count": None}, "qwen3moe.expert_count"),
    "more used than experts": ("qwen3moe", {"expert_used_count": 7}, "qwen3moe.expert_used_count"),
    "no expert width": ("qwen3moe", {"expert_feed_forward_length": None}, "qwen3moe.expert_feed_forward_length"),
    "experts a string": ("qwen2moe", {"expert_count": "4"}, "qwen2moe.expert_count"),
    "no logit scale": ("granite", {"logit_scale": None}, "granite.logit_scale"),
    "logit scale 0": ("granite", {"logit_scale": 0.0}, "granite.logit_scale"),
    "residual scale inf": ("granite", {"residual_scale": float("inf")}, "granite.residual_scale"),
    "no layer-norm eps": ("starcoder2", {"attention.layer_norm_epsilon": None},
                          "starcoder2.attention.layer_norm_epsilon"),
    "unknown rope scaling": ("llama-yarn", {"rope.scaling.type": "dynamic"}, "llama.rope.scaling.type"),
    "negative rope factor": ("llama-yarn", {"rope.scaling.factor": -2.0}, "llama.rope.scaling.factor"),
    "nan rope factor": ("llama-yarn", {"rope.scaling.factor": float("nan")}, "llama.rope.scaling.factor"),
    "yarn shrinking": ("llama-yarn", {"rope.scaling.factor": 1e-5}, "llama.rope.scaling.factor"),
    "yarn context 0": ("llama-yarn", {"rope.scaling.original_context_length": 0},
                       "llama.rope.scaling.original_context_length"),
    "attn factor 0": ("phi3", {"rope.scaling.attn_factor": 0.0}, "phi3.rope.scaling.attn_factor"),
    "soft-cap negative": ("gemma2", {"attn_logit_softcapping": -1.0}, "gemma2.attn_logit_softcapping"),
    "soft-cap inf": ("gemma2", {"final_logit_softcapping": float("inf")}, "gemma2.final_logit_softcapping"),
    "window 0": ("gemma2", {"attention.sliding_window": 0}, "gemma2.attention.sliding_window"),
    "swa base 0": ("gemma2", {"rope.freq_base_swa": 0.0}, "gemma2.rope.freq_base_swa"),
    "rope past the head": ("phi3", {"rope.dimension_count": 18}, "phi3.rope.dimension_count"),
    "partial rope where heads rotate whole": ("qwen3", {"rope.dimension_count": 8}, "qwen3.rope.dimension_count"),
    "finetuned not a bool": ("granite", {"rope.scaling.finetuned": 3}, "granite.rope.scaling.finetuned"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_metadata_is_refused_naming_the_key(case, tmp_path):
    from kettle.errors import MetadataError

    name, changes, key = HOSTILE[case]
    meta, tensors = decoder_parts(name)
    arch = MODELS[name][0]
    for k, v in changes.items():
        if v is None:
            meta.pop(f"{arch}.{k}", None)
        else:
            meta[f"{arch}.{k}"] = v
    with GGUFFile(write_gguf(tmp_path / "m.gguf", meta, tensors)) as f, pytest.raises(MetadataError) as err:
        load_model(f)
    assert f"'{key}'" in str(err.value)


def test_a_swa_pattern_of_the_wrong_length_is_refused(tmp_path):
    from kettle.errors import MetadataError
    from tests.gguf_factory import Typed

    meta, tensors = decoder_parts("gemma2")
    meta["gemma2.attention.sliding_window_pattern"] = Typed([True, False, True], "ARRAY", "BOOL")
    with GGUFFile(write_gguf(tmp_path / "m.gguf", meta, tensors)) as f, \
            pytest.raises(MetadataError, match="4 booleans"):
        load_model(f)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_hostile_rope_factors_are_refused(value, tmp_path):
    from kettle.errors import WeightError

    meta, tensors = decoder_parts("llama31")
    tensors["rope_freqs.weight"] = np.full_like(tensors["rope_freqs.weight"], value)
    with GGUFFile(write_gguf(tmp_path / "m.gguf", meta, tensors)) as f, \
            pytest.raises(WeightError, match="rope factors"):
        load_model(f)


def test_experts_that_disagree_with_the_count_are_refused(tmp_path):
    from kettle.errors import WeightError

    meta, tensors = decoder_parts("qwen2moe")
    meta["qwen2moe.expert_count"] = 5  # the tensors hold 4
    with GGUFFile(write_gguf(tmp_path / "m.gguf", meta, tensors)) as f, \
            pytest.raises(WeightError, match=r"ffn_gate_exps.weight' has shape \(4, 32, 64\), expected \(5, 32, 64\)"):
        load_model(f)


def test_factors_an_architecture_does_not_use_are_unexpected(tmp_path):
    from kettle.errors import WeightError

    meta, tensors = decoder_parts("qwen3")
    tensors["rope_freqs.weight"] = np.ones(8, np.float32)
    with GGUFFile(write_gguf(tmp_path / "m.gguf", meta, tensors)) as f, \
            pytest.raises(WeightError, match="unexpected tensors: rope_freqs.weight"):
        load_model(f)

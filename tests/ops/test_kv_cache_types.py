"""KV cache types (KETTLE_KV_CACHE_TYPE): f16 and q8_0 store what their references give, and
attention over them stays close to attention over float32."""

from __future__ import annotations

import numpy as np
import pytest

from kettle.engine.kv_cache import KVCache, kv_cache_type
from kettle.errors import InvalidParameter
from kettle.ops.attention import attention
from kettle.quant.legacy import Q8_0

N_KV, HD, N_CTX, N_HEAD, N = 2, 64, 40, 6, 30


def _filled(kind: str) -> tuple[KVCache, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    k = rng.standard_normal((N, N_KV * HD)).astype(np.float32)
    v = rng.standard_normal((N, N_KV * HD)).astype(np.float32)
    cache = KVCache(1, N_KV, HD, N_CTX, 2, kind)
    cache.put(0, np.zeros(N, np.int64), np.arange(N), k, v)
    return cache, k, v


def test_f16_is_the_rounded_half() -> None:
    cache, k, _ = _filled("f16")
    got = cache.layer(0)[0][0, :, :N].view(np.float16)
    assert (got == k.reshape(N, N_KV, HD).transpose(1, 0, 2).astype(np.float16)).all()


def test_q8_0_is_ggmls_q8_0() -> None:
    cache, k, _ = _filled("q8_0")
    codes, _, scales, _ = cache.layer(0)
    ref = Q8_0.dequantize_blocks(Q8_0.quantize_blocks(k.reshape(-1, 32))).reshape(N, N_KV, HD).transpose(1, 0, 2)
    got = codes[0, :, :N].astype(np.float32) * np.repeat(scales[0, :, :N].view(np.float16).astype(np.float32), 32, -1)
    np.testing.assert_array_equal(got, ref)
    assert cache.k.nbytes + cache.k_scales.nbytes == pytest.approx(KVCache(1, N_KV, HD, N_CTX, 2, "f16").k.nbytes
                                                                  * 34 / 64)


@pytest.mark.parametrize("kind,tol", [("f16", 2e-3), ("q8_0", 3e-2)])
def test_attention_close_to_f32(kind: str, tol: float) -> None:
    q = np.random.default_rng(1).standard_normal((3, N_HEAD, HD)).astype(np.float32)
    outs = {}
    for k in ("f32", kind):
        cache, _, _ = _filled(k)
        kc, vc, ks, vs = cache.layer(0)
        outs[k] = attention(q, kc, vc, np.zeros(3, np.int64), np.array([5, 17, 29]), 0, 0.125,
                            np.empty_like(q), 0.0, ks, vs)
    assert np.abs(outs[kind] - outs["f32"]).max() < tol


def test_bad_type_and_head_size_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETTLE_KV_CACHE_TYPE", "q4_0")
    with pytest.raises(InvalidParameter, match="KETTLE_KV_CACHE_TYPE"):
        kv_cache_type()
    with pytest.raises(ValueError, match="multiple of 32"):
        KVCache(1, 1, 48, 8, 1, "q8_0")

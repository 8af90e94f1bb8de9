"""Settings the README documents that no other test showed doing anything: each test here
fails if its setting were read nowhere (issue #13: "every setting the README lists has a test
that shows its effect").

Thread counts are checked where the kernels see them (``numba.get_num_threads()`` inside the
model's forward), never by timing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numba
import numpy as np
import pytest
import uvicorn

import kettle
from kettle.engine.runner import Runner
from kettle.engine.scheduler import Scheduler
from kettle.engine.threads import ADAPTIVE_TOKENS
from kettle.errors import InvalidParameter, WeightError
from kettle.gguf import GGUFFile
from kettle.models import load_model
from kettle.models.transformer import Transformer
from kettle.options import LoadOptions
from kettle.server import app as server_app
from kettle.server.app import create_app
from kettle.store import Store
from tests.gguf_factory import tiny_model
from tests.models.decoder_factory import tiny_decoder
from tests.server.test_scheduler import FakeClock, FakeLoader, fake_embedder

CORES = numba.config.NUMBA_NUM_THREADS
PROMPT = list(range(3, 3 + ADAPTIVE_TOKENS + 4))  # a step this long always runs on every thread allowed
needs_two = pytest.mark.skipif(CORES < 2, reason="numba has one thread here: 1 and 'all' are the same")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("settings") / "tiny.gguf", vocab=True)


def _kernel_threads(runner: Runner) -> list[int]:
    """Record numba's thread count at each call of ``runner``'s model (what its kernels run on)."""
    seen: list[int] = []
    forward = runner.model.forward

    def spy(*args: object, **kw: object) -> np.ndarray:
        seen.append(numba.get_num_threads())
        return forward(*args, **kw)

    runner.model.forward = spy  # type: ignore[method-assign]
    return seen


def _prefill(runner: Runner, slot: int = 0) -> None:
    runner.cache.clear(slot)
    n = len(PROMPT)
    runner.forward(PROMPT, range(n), [slot] * n)
    runner.cache.clear(slot)


# -- KETTLE_NUM_THREAD / num_thread -------------------------------------------------------

def test_num_thread_falls_back_to_kettle_num_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETTLE_NUM_THREAD", "3")
    assert LoadOptions().thread_count() == 3
    assert LoadOptions(num_thread=5).thread_count() == 5  # the load option wins
    monkeypatch.setenv("KETTLE_NUM_THREAD", "0")
    assert LoadOptions().thread_count() == 0  # every core
    monkeypatch.setenv("KETTLE_NUM_THREAD", "-2")
    with pytest.raises(InvalidParameter, match="KETTLE_NUM_THREAD"):
        LoadOptions().thread_count()


@needs_two
def test_kettle_num_thread_reaches_the_kernels(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETTLE_NUM_THREAD", "1")
    model = kettle.load(tiny)  # the Python API; the server's loader builds the same Model
    try:
        assert model.runner.n_thread == 1
        seen = _kernel_threads(model.runner)
        _prefill(model.runner)
        assert seen == [1]
    finally:
        model.close()
    monkeypatch.delenv("KETTLE_NUM_THREAD")
    model = kettle.load(tiny)
    try:
        assert model.runner.n_thread == CORES  # unset: every core
    finally:
        model.close()


@needs_two
def test_the_load_option_beats_kettle_num_thread(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETTLE_NUM_THREAD", "1")
    model = kettle.load(tiny, num_thread=2)
    try:
        seen = _kernel_threads(model.runner)
        _prefill(model.runner)
        assert model.runner.n_thread == 2 and seen == [2]
    finally:
        model.close()


def test_the_server_loader_reads_kettle_num_thread(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kettle.server.models import load_model as server_loader

    monkeypatch.setenv("KETTLE_NUM_THREAD", "1")
    model = server_loader(kettle.api.resolve(tiny), LoadOptions(), 2)  # what a request without num_thread gets
    try:
        assert model.runner.n_thread == 1
    finally:
        model.close()


@needs_two
def test_ctransformers_threads_at_load_and_per_call(tiny: Path) -> None:
    from kettle import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_pretrained(str(tiny), threads=1)
    try:
        assert llm.model.runner.n_thread == 1
    finally:
        llm.model.close()
    llm = AutoModelForCausalLM.from_pretrained(str(tiny), batch_size=len(PROMPT))  # threads=-1: every core
    try:
        runner = llm.model.runner
        assert runner.n_batch == len(PROMPT)  # batch_size at load: num_batch
        seen = _kernel_threads(runner)
        llm.eval(PROMPT, batch_size=len(PROMPT), threads=1)
        llm.reset()
        llm.eval(PROMPT, batch_size=len(PROMPT))
        assert seen == [1, CORES]  # the call's threads=, then the loaded count again
        assert runner.n_thread == CORES
        llm.reset()
        llm.config.threads = 1  # the config's default for later calls
        llm.eval(PROMPT, batch_size=len(PROMPT))
        assert seen[-1] == 1
    finally:
        llm.model.close()


# -- KETTLE_KV_CACHE_TYPE -----------------------------------------------------------------

def test_kv_cache_type_sets_the_cache_of_a_load(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, itemsize in (("f16", 2), ("f32", 4)):  # f16 is kept as its bits (uint16)
        monkeypatch.setenv("KETTLE_KV_CACHE_TYPE", kind)
        model = kettle.load(tiny)
        try:
            assert model.runner.cache.kind == kind and model.runner.cache.k.itemsize == itemsize
        finally:
            model.close()


# -- num_batch ----------------------------------------------------------------------------

def test_num_batch_chunks_the_prefill(tiny: Path) -> None:
    model = kettle.load(tiny, num_batch=7)
    try:
        calls: list[int] = []
        forward = model.runner.model.forward
        model.runner.model.forward = lambda tok, *a, **kw: calls.append(len(tok)) or forward(tok, *a, **kw)
        _prefill(model.runner)
        assert calls == [7, 7, 6]
    finally:
        model.close()


# -- the scheduler's defaults -------------------------------------------------------------

def test_scheduler_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETTLE_MAX_LOADED_MODELS", "1")
    monkeypatch.setenv("KETTLE_NUM_PARALLEL", "3")
    monkeypatch.setenv("KETTLE_KEEP_ALIVE", "90s")
    monkeypatch.setenv("KETTLE_MAX_QUEUE", "5")
    loader = FakeLoader()
    sched = Scheduler(loader, clock=FakeClock(), embedder=fake_embedder)
    try:
        assert sched.max_queue == 5
        sched.acquire("a", "A", 1).release()
        assert loader.models[0].runner.n_slots == 3  # KETTLE_NUM_PARALLEL slots
        assert sched.loaded()[0].expires_in == pytest.approx(90)  # KETTLE_KEEP_ALIVE
        sched.acquire("b", "B", 1).release()  # one model at a time: a leaves
        assert [m.name for m in sched.loaded()] == ["b"]
        assert loader.models[0].closed.wait(10)  # its worker closes it as it ends
    finally:
        sched.close()


# -- KETTLE_MAX_STORED_COMPLETIONS --------------------------------------------------------

def test_max_stored_completions_bounds_the_server_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETTLE_MAX_STORED_COMPLETIONS", "2")
    app = create_app(store=Store(tmp_path))
    state = app.state.kettle
    try:
        ids = [f"chatcmpl-{i:024x}" for i in range(4)]
        for cid in ids:
            assert state.completions.put({"id": cid, "model": "m"}, [], {})
        assert [c["id"] for c in state.completions.list(None, {})] == ids[2:]  # the oldest went first
    finally:
        state.scheduler.close()


# -- KETTLE_DEBUG, KETTLE_MAX_CONNECTIONS, KETTLE_KEEPALIVE_TIMEOUT, KETTLE_HOST in serve() ----

@pytest.mark.parametrize("debug, access_log, level", [("1", True, "debug"), ("0", False, "info")])
def test_serve_reads_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  debug: str, access_log: bool, level: str) -> None:
    started: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **kw: started.append(self.config))
    monkeypatch.setattr(server_app.logging, "basicConfig", lambda **kw: None)  # leave pytest's logging alone
    for name, value in (("KETTLE_DEBUG", debug), ("KETTLE_MAX_CONNECTIONS", "7"), ("KETTLE_KEEPALIVE_TIMEOUT", "9"),
                        ("KETTLE_HOST", "127.0.0.1:12345"), ("KETTLE_MODELS", str(tmp_path))):
        monkeypatch.setenv(name, value)
    server_app.serve()
    (cfg,) = started
    try:
        assert (cfg.access_log, cfg.log_level) == (access_log, level)
        assert (cfg.limit_concurrency, cfg.timeout_keep_alive) == (7, 9)
        assert (cfg.host, cfg.port) == ("127.0.0.1", 12345)
    finally:
        cfg.app.state.kettle.scheduler.close()


# -- TransformerConfig.post_norms ---------------------------------------------------------

@pytest.mark.parametrize("name", ["gemma2", "olmo2"])
def test_post_norms_switch_the_post_attention_and_ffn_norms(tmp_path: Path, name: str) -> None:
    path = tiny_decoder(tmp_path / f"{name}.gguf", name)
    ids = [5, 17, 33, 8]
    with GGUFFile(path) as f:
        model = load_model(f)
        assert model.config.post_norms
        normed = Runner(model, n_ctx=16).forward(ids, range(4), [0] * 4)
        weights = dataclasses.replace(model.weights, tensors={
            k: v for k, v in model.weights.tensors.items() if "post_attention_norm" not in k and "post_ffw_norm" not in k})
        plain = Transformer(dataclasses.replace(model.config, post_norms=False), weights)
        assert not np.allclose(Runner(plain, n_ctx=16).forward(ids, range(4), [0] * 4), normed)
        with pytest.raises(WeightError, match="post_norms"):  # a bound weight nothing reads is refused
            Transformer(dataclasses.replace(model.config, post_norms=False), model.weights)


# -- mlc's ChatConfig / GenerationConfig --------------------------------------------------

def test_mlc_load_fields_reach_the_runner_and_sampling_fields_the_sampler(smollm2_path: Path) -> None:
    from kettle.compat.mlc import ChatConfig, ChatModule, GenerationConfig

    cm = ChatModule(model=str(smollm2_path), chat_config=ChatConfig(context_window_size=64, prefill_chunk_size=5,
                                                             temperature=0.3, top_p=0.7))
    try:
        runner = cm.kettle_model.runner
        assert (runner.n_ctx, runner.n_batch) == (64, 5)
        params, _ = cm._params(GenerationConfig(top_p=0.5, repetition_penalty=1.3, presence_penalty=0.25,
                                                frequency_penalty=0.125, max_gen_len=7))
        assert (params.temperature, params.top_p, params.repeat_penalty) == (0.3, 0.5, 1.3)  # chat < generation
        assert (params.presence_penalty, params.frequency_penalty, params.num_predict) == (0.25, 0.125, 7)
    finally:
        cm.kettle_model.close()

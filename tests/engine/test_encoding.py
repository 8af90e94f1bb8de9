"""An embedding model inside the scheduler: embeddings run between steps on a free slot;
a generation that reaches it (nothing above refused it) fails with ``CapabilityError``."""

from __future__ import annotations

import queue

import numpy as np
import pytest

from kettle.api import Model, ModelSpec
from kettle.engine.scheduler import Scheduler
from kettle.engine.worker import EmbedResult
from kettle.errors import CapabilityError
from kettle.options import parse_options
from kettle.sampling import SamplingParams
from tests.models.encoder_factory import tiny_encoder


@pytest.fixture
def scheduler():
    s = Scheduler(lambda spec, load, n: Model(spec, load, num_parallel=n), num_parallel=2, max_loaded=1,
                  max_queue=4, keep_alive=-1)
    yield s
    s.close()


def test_embed_and_generate_through_the_scheduler(tmp_path, scheduler):
    path = tiny_encoder(tmp_path / "bert.gguf", "bert-mean")
    load, _ = parse_options({"num_ctx": 64})
    events: queue.Queue = queue.Queue()
    with scheduler.acquire("bert", ModelSpec(path, name="bert"), load) as lease:
        assert lease.model.embedding_only and lease.model.runner.n_slots == 2
        lease.embed(["hello world", "the cat sat"], events.put)
        result = events.get(timeout=60)
        assert isinstance(result, EmbedResult) and result.vectors.shape == (2, 64)
        assert np.array_equal(result.vectors, lease.model.embed(["hello world", "the cat sat"]))
        assert result.prompt_tokens == sum(len(lease.model.tokenize(t)) for t in ("hello world", "the cat sat"))
        lease.submit([2, 5, 3], SamplingParams(), events.put)
        failure = events.get(timeout=60)
        assert isinstance(failure, CapabilityError) and str(failure) == '"bert" does not support generate'
        lease.embed(["still serving"], events.put)  # the worker carries on
        assert isinstance(events.get(timeout=60), EmbedResult)

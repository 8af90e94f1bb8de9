"""``GET /metrics``: the server's counters and gauges in Prometheus' text format (0.0.4).

One ``Metrics`` per app (``ServerState.metrics``), each with its own
``prometheus_client.CollectorRegistry`` (never the process-global one: tests build
several apps in one process). What it exposes:

* ``kettle_requests_total{path, code}``: HTTP requests answered, by route (the
  route's template, ``/api/blobs/{digest}``, so the label set stays bounded; a path
  no route matches is ``other``) and status code; counted by ``RequestCounter``,
  the app's outermost middleware, so 401/403/413 answers are counted too.
* ``kettle_prompt_tokens_total{model}``, ``kettle_generated_tokens_total{model}``,
  ``kettle_prompt_cached_tokens_total{model}``: the ``prompt_eval_count``,
  ``eval_count`` and ``prompt_cached_count`` of every finished generation (the
  cached tokens are the prompt prefix reused from the KV cache; the prompt count
  includes them, as ollama counts it); ``record`` is called where every generation
  ends (``generation._final``).
* Gauges read from the scheduler at each scrape: ``kettle_requests_waiting``
  (leases that hold no slot yet: waiting for a slot or for their model to load),
  ``kettle_models_loaded``, and per loaded model ``kettle_slots_in_use{model}``,
  ``kettle_slots_total{model}`` and ``kettle_model_load_seconds{model}`` (how
  long its load took; known for models the app's own loader loaded, see ``timed``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kettle.engine.scheduler import LoadedModel, Loader, ModelState, Scheduler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER_PATH = "other"  # the path label of a request no route matches


class Metrics:
    """See the module docstring; thread-safe (prometheus_client's counters lock)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("kettle_requests", "HTTP requests answered, by route and status code",
                                ["path", "code"], registry=self.registry)
        self.prompt_tokens = Counter("kettle_prompt_tokens", "prompt tokens of finished generations "
                                     "(cached prefix included)", ["model"], registry=self.registry)
        self.generated_tokens = Counter("kettle_generated_tokens", "tokens generated", ["model"],
                                        registry=self.registry)
        self.cached_tokens = Counter("kettle_prompt_cached_tokens", "prompt tokens reused from the KV "
                                     "prefix cache (not recomputed)", ["model"], registry=self.registry)
        self._lock = threading.Lock()
        self._load_seconds: dict[str, float] = {}  # model name -> its latest load's duration

    def watch(self, scheduler: Scheduler) -> None:
        """Expose ``scheduler``'s queue, slots and loaded models (read at each scrape)."""
        self.registry.register(_SchedulerCollector(scheduler, self))

    def record(self, model: str, stats: Any) -> None:
        """Count a finished generation's tokens (``stats``: the engine's ``Stats``)."""
        self.prompt_tokens.labels(model).inc(stats.prompt_eval_count)
        self.generated_tokens.labels(model).inc(stats.eval_count)
        self.cached_tokens.labels(model).inc(stats.prompt_cached_count)

    def timed(self, loader: Loader) -> Loader:
        """``loader``, remembering how long each model's load took (by ``spec.name``)."""

        def load(spec: Any, load_options: Any, num_parallel: int) -> LoadedModel:
            model = loader(spec, load_options, num_parallel)
            with self._lock:
                self._load_seconds[spec.name] = model.load_duration / 1e9
            return model

        return load

    def load_seconds(self, name: str) -> float | None:
        with self._lock:
            return self._load_seconds.get(name)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _SchedulerCollector:
    """The scheduler's gauges, computed when scraped."""

    def __init__(self, scheduler: Scheduler, metrics: Metrics) -> None:
        self.scheduler = scheduler
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        sched = self.scheduler
        ready = [m for m in sched.loaded() if m.state is ModelState.READY]
        # The scheduler keeps this count under its lock; an int read needs none.
        yield GaugeMetricFamily("kettle_requests_waiting", "requests holding a model lease but no slot yet "
                                "(waiting for a slot or for the model to load)", value=sched.waiting)
        yield GaugeMetricFamily("kettle_models_loaded", "models loaded and ready", value=len(ready))
        in_use = GaugeMetricFamily("kettle_slots_in_use", "engine slots running a sequence", labels=["model"])
        total = GaugeMetricFamily("kettle_slots_total", "engine slots (KETTLE_NUM_PARALLEL per model)",
                                  labels=["model"])
        load = GaugeMetricFamily("kettle_model_load_seconds", "how long the model's load took", labels=["model"])
        for m in ready:
            in_use.add_metric([m.name], m.running)
            total.add_metric([m.name], sched.num_parallel)
            seconds = self.metrics.load_seconds(m.name)
            if seconds is not None:
                load.add_metric([m.name], seconds)
        yield in_use
        yield total
        yield load


class RequestCounter:
    """ASGI middleware: counts each HTTP request in ``kettle_requests_total`` once its
    response has started (a handler that fails before answering counts as 500)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.requests.labels(self._path(scope), str(status)).inc()

    def _path(self, scope: Scope) -> str:
        route = scope.get("route")  # set by starlette's router once it matched
        if route is None:
            for candidate in self.routes:
                match, _ = candidate.matches(scope)
                if match is not Match.NONE:
                    route = candidate
                    break
        path = getattr(route, "path", None)
        return path if isinstance(path, str) and path else OTHER_PATH


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.kettle.metrics
    return Response(metrics.text(), media_type=CONTENT_TYPE)

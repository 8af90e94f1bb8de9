"""The CLI without a server: the same operations, in this process.

The store is ``KETTLE_MODELS`` (opened on first use, so ``kettle --version``
touches nothing). Answers have the shapes ollama's routes give them (see
``backend.py``), built from the store's entries and ``kettle.load``'s stream.

One model is kept loaded for the life of the process (the REPL's whole
session); a request whose load-time options (``num_ctx``, ``num_batch``,
``num_thread``, ``num_gpu``) differ from the loaded ones reloads it, as the
server's scheduler would. ``ps`` and ``stop`` need a server: nothing outlives
this process, so they raise ``NoServer``.

Prompts are built by ``kettle.request``, as the server builds them: a one-shot
prompt (``generate``) is one user turn (after ``system`` when given) in the
model's template, and a chat that outgrows the context leaves out its oldest
turns (``truncate``, on by default, as ollama's ``/api/chat`` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kettle.cli.backend import NoServer, Report

if TYPE_CHECKING:
    from kettle.api import Model, Stream
    from kettle.modelfile import Modelfile
    from kettle.store import Store

# The load-time options ``kettle.load`` takes; a change of one means a reload. (The
# other load-time names, use_mmap and the like, are accepted and ignored by kettle.)
LOAD_ARGUMENTS = ("num_ctx", "num_batch", "num_thread", "num_gpu")


def rfc3339(when: datetime | None = None) -> str:
    """A UTC time as Go writes it in JSON (``2024-05-01T12:00:00.123456Z``)."""
    return (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class LocalGeneration:
    """A ``kettle.api.Stream`` as ollama chunk objects (see ``backend.Generation``)."""

    def __init__(self, stream: Stream, model: str, chat: bool) -> None:
        self.stream = stream
        self.model = model
        self.chat = chat

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for chunk in self.stream:
            obj: dict[str, Any] = {"model": self.model, "created_at": rfc3339()}
            if self.chat:
                obj["message"] = {"role": "assistant", "content": chunk.text}
                if chunk.thinking:
                    obj["message"]["thinking"] = chunk.thinking
            else:
                obj["response"] = chunk.text
                if chunk.thinking:
                    obj["thinking"] = chunk.thinking
            obj["done"] = chunk.done
            if chunk.done:
                obj["done_reason"] = chunk.done_reason
                if chunk.stats is not None:
                    obj.update(chunk.stats.as_dict())
            yield obj

    def interrupt(self) -> None:
        self.stream.cancel()  # the engine ends the sequence at its next step

    def close(self) -> None:
        """Finish the stream (cancelled), so the model's lock and slot are released."""
        self.stream.cancel()
        for _ in self.stream:
            pass


class LocalBackend:
    """``backend.Backend`` in this process; ``address`` is the server it did not find."""

    remote = False

    def __init__(self, server_address: str) -> None:
        self.address = server_address
        self._store: Store | None = None
        self._model: Model | None = None
        self._model_key: tuple[str, tuple[tuple[str, Any], ...]] | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from kettle.store import Store

            self._store = Store()
        return self._store

    # -- models ----------------------------------------------------------------

    def version(self) -> str:
        from kettle import __version__

        return __version__

    def list(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.store.list_models():
            shown = entry.name.display()
            out.append({
                "name": shown, "model": shown, "modified_at": rfc3339(entry.modified_at),
                "size": entry.size, "digest": entry.digest, "details": entry.details.to_json(),
            })
        return out

    def ps(self) -> list[dict[str, Any]]:
        raise NoServer(self.address, "so no model is loaded")

    def stop(self, model: str) -> None:
        raise NoServer(self.address, f"so {model!r} is not loaded")

    def exists(self, model: str) -> bool:
        return self.store.exists(model) or (Path(model).suffix == ".gguf" and Path(model).is_file())

    def show(self, model: str) -> dict[str, Any]:
        """``/api/show``'s answer, built by the server's own code (one definition of it)."""
        from kettle.server.models import Catalog

        catalog = Catalog(self.store)
        return catalog.show(catalog.resolve(model), False)

    def pull(self, model: str, report: Report, *, insecure: bool = False) -> None:
        from kettle.store.pull import pull_model

        pull_model(self.store, model, report, insecure=insecure)

    def push(self, model: str, report: Report, *, insecure: bool = False) -> None:
        from kettle.store.push import push_model

        push_model(self.store, model, report, insecure=insecure)

    def create(self, model: str, modelfile: Modelfile, base_dir: Path, report: Report,
               quantize: str | None = None) -> None:
        from kettle.modelfile import create_model

        create_model(self.store, model, modelfile, base_dir, progress=lambda status: report({"status": status}),
                     quantize=quantize)

    def copy(self, source: str, destination: str) -> None:
        self.store.copy(source, destination)

    def delete(self, model: str) -> None:
        self.store.remove(model)

    # -- generation --------------------------------------------------------------

    def load(self, model: str, options: dict[str, Any] | None = None) -> Model:
        """The loaded model for ``model`` with these load-time options (loading it if needed)."""
        import kettle

        given = {k: v for k, v in (options or {}).items() if k in LOAD_ARGUMENTS and v is not None}
        key = (model, tuple(sorted(given.items())))
        if self._model is not None and self._model_key == key:
            return self._model
        self.unload()
        self._model = kettle.load(model, **given)
        self._model_key = key
        return self._model

    def unload(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = self._model_key = None

    def _stream(self, request: dict[str, Any], chat: bool) -> LocalGeneration:
        """The request as the server would build it (``kettle.request``), run in-process."""
        from kettle.request import Kind, PromptRequest
        from kettle.thinking import parse_think

        options = dict(request.get("options") or {})
        model = self.load(request["model"], options)
        sampling = {k: v for k, v in options.items() if k not in LOAD_ARGUMENTS}
        think = parse_think(request.get("think"))
        if chat:
            req = PromptRequest(Kind.CHAT, messages=list(request.get("messages") or []), tools=request.get("tools"),
                                truncate=request.get("truncate", True), options=sampling,
                                format=request.get("format") or None, think=think, model=request["model"])
        else:
            req = PromptRequest(Kind.GENERATE, prompt=request.get("prompt", ""), suffix=request.get("suffix", ""),
                                system=request.get("system") or None, template=request.get("template"),
                                context=request.get("context"), raw=bool(request.get("raw", False)),
                                options=sampling, format=request.get("format") or None, think=think,
                                model=request["model"])
        return LocalGeneration(model.submit(req), request["model"], chat)

    def chat(self, request: dict[str, Any]) -> LocalGeneration:
        return self._stream(request, chat=True)

    def generate(self, request: dict[str, Any]) -> LocalGeneration:
        return self._stream(request, chat=False)

    def embed(self, model: str, inputs: list[str]) -> list[list[float]]:
        return self.load(model).embed(inputs, truncate=True).tolist()  # /api/embed truncates by default

    def close(self) -> None:
        self.unload()


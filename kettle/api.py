"""The Python API: ``kettle.load(name_or_path)`` and the ``Model`` it returns.

    import kettle
    model = kettle.load()                      # the bundled default (smollm2)
    for chunk in model.chat([{"role": "user", "content": "Hi"}], temperature=0):
        print(chunk.text, end="", flush=True)

Options are named as ollama names them. Load-time options (``num_ctx``,
``num_batch``, ``num_thread``) go to ``load``; sampling options to each call.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kettle.engine.batch import BatchEngine, Chunk, Constraint
from kettle.engine.draft import Drafter, check_vocabularies
from kettle.engine.encoding import EmbeddingOnlyEngine, EncoderRunner
from kettle.engine.memory import check_load_fits
from kettle.engine.runner import Runner
from kettle.errors import (
    CapabilityError,
    ContextOverflow,
    GGUFError,
    MetadataError,
    TokenizerError,
    UnsupportedModel,
)
from kettle.gguf import GGUFFile
from kettle.models import Encoder, Transformer, load_model
from kettle.models.lora import LoraAdapter, apply_adapters
from kettle.options import LoadOptions, parse_options
from kettle.request import (
    Kind,
    PromptRequest,
    build_prompt,
    constraint_factory,
    embed_ids,
    sampling_params,
)
from kettle.sampling import SamplingParams
from kettle.store import Store, StoredModel, resolve_model
from kettle.thinking import ThinkSplitter, parse_think
from kettle.tokenizer import Tokenizer


@dataclass(frozen=True)
class ModelSpec:
    """What a name resolves to: the GGUF file plus what a Modelfile layered on it."""

    path: Path
    name: str = ""
    template: str | None = None  # a TEMPLATE (Go or Jinja); None: the file's or the family's
    system: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)  # PARAMETERs, typed
    messages: tuple[Mapping[str, str], ...] = ()  # MESSAGE history
    adapters: tuple[Path, ...] = ()  # LoRA adapter GGUFs (ADAPTER), applied beside the weights
    draft: Path | None = None  # a draft model's GGUF (DRAFT): speculative decoding with it

    @classmethod
    def of(cls, stored: StoredModel) -> ModelSpec:
        """The spec of a model in the store (its layers: TEMPLATE, SYSTEM, PARAMETERs...)."""
        return cls(
            path=stored.model_path, name=stored.name.display(), template=stored.template, system=stored.system,
            params=dict(stored.params), messages=tuple(stored.messages), adapters=tuple(stored.adapters),
            draft=stored.draft,
        )


def resolve(name_or_path: str | os.PathLike[str] | None, store: Store | None = None) -> ModelSpec:
    """A ``.gguf`` path, or a model name in the store (pulling a bundled model on first use)."""
    if name_or_path is not None and not isinstance(name_or_path, str):
        return ModelSpec(Path(name_or_path), name=Path(name_or_path).name)
    if name_or_path is not None and (name_or_path.endswith(".gguf") or os.sep in name_or_path) and Path(name_or_path).exists():
        return ModelSpec(Path(name_or_path), name=Path(name_or_path).name)
    return ModelSpec.of(resolve_model(store or Store(), name_or_path))


def _nothing_kept_on_failure(init: Any) -> Any:
    """A load that fails keeps nothing: the file is unmapped and every partial attribute
    dropped at once, even while the exception (whose traceback holds ``self``) lives on."""

    @functools.wraps(init)
    def wrapper(self: Model, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            gguf = self.__dict__.get("gguf")
            adapters = self.__dict__.get("adapters", ())
            draft = self.__dict__.get("draft_gguf")
            self.__dict__.clear()
            for f in adapters:
                f.close()
            for g in (draft, gguf):
                if g is not None:
                    g.close()
            raise

    return wrapper


class Model:
    """A loaded model: tokenizer, weights (memory-mapped), KV cache, templates."""

    @_nothing_kept_on_failure
    def __init__(self, spec: ModelSpec, load_options: LoadOptions, num_parallel: int = 1) -> None:
        t0 = time.perf_counter_ns()
        self.spec = spec
        self.name = spec.name
        self.load_options = load_options
        self.gguf = GGUFFile(spec.path)
        try:
            self.tokenizer = Tokenizer.from_metadata(self.gguf.metadata)
        except TokenizerError as e:  # inconsistent tokenizer metadata is a bad file
            raise GGUFError(spec.path, f"tokenizer: {e}") from None
        self.transformer: Transformer | Encoder = load_model(self.gguf)  # an Encoder: an embedding model
        self.adapters: list[LoraAdapter] = []
        for path in spec.adapters:
            self.adapters.append(LoraAdapter.open(path, self.gguf.architecture))
        self.transformer = apply_adapters(self.transformer, self.adapters)
        cfg = self.transformer.config
        if self.tokenizer.vocab_size != cfg.n_vocab:
            raise MetadataError(spec.path, "tokenizer.ggml.tokens", f"{self.tokenizer.vocab_size} tokens",
                                f"{cfg.n_vocab}, one per row of token_embd.weight")
        n_ctx = load_options.context_length(cfg.context_length)
        self.embedding_only = isinstance(self.transformer, Encoder)  # embeds; cannot generate
        if self.embedding_only:
            self.runner: Runner | EncoderRunner = EncoderRunner(
                self.transformer, n_ctx=n_ctx, n_slots=num_parallel, n_thread=load_options.thread_count())
            self.engine: BatchEngine | EmbeddingOnlyEngine = EmbeddingOnlyEngine(spec.name or spec.path.name)
        else:
            self._load_decoder(cfg, load_options, n_ctx, num_parallel)
        self._lock = threading.Lock()  # one call at a time on this object
        from kettle.prompt import PromptBuilder

        self.prompts = PromptBuilder(self.gguf.metadata, self.tokenizer, spec)
        self.load_duration = time.perf_counter_ns() - t0
        self._first_call = True

    def _load_decoder(self, cfg: Any, load_options: LoadOptions, n_ctx: int, num_parallel: int) -> None:
        n_thread = load_options.thread_count()  # num_thread, else KETTLE_NUM_THREAD; 0: every core
        check_load_fits(cfg, n_ctx=n_ctx, n_slots=num_parallel, n_batch=load_options.num_batch,
                        n_thread=n_thread or (os.cpu_count() or 1))  # before the KV cache exists
        self.runner = Runner(
            self.transformer, n_ctx=n_ctx, n_slots=num_parallel,
            n_batch=load_options.num_batch, n_thread=n_thread,
        )
        drafter = None
        if self.spec.draft is not None:
            drafter = self._load_draft(self.spec.draft, n_ctx, num_parallel, load_options.num_batch, n_thread)
        self.engine = BatchEngine(self.runner, self.tokenizer, drafter)

    def _load_draft(self, path: Path, n_ctx: int, num_parallel: int, n_batch: int, n_thread: int) -> Drafter:
        """The draft model (``kettle.engine.draft``): its own weights and KV cache, one slot per
        main slot, the same context; refused unless its vocabulary is the main model's."""
        self.draft_gguf = GGUFFile(path)
        try:
            tokenizer = Tokenizer.from_metadata(self.draft_gguf.metadata)
        except TokenizerError as e:
            raise GGUFError(path, f"tokenizer: {e}") from None
        check_vocabularies(self.tokenizer, tokenizer, path.name)
        model = load_model(self.draft_gguf)
        if isinstance(model, Encoder):
            raise UnsupportedModel(f"draft model {path.name}: an embedding model cannot draft")
        check_load_fits(model.config, n_ctx=n_ctx, n_slots=num_parallel, n_batch=n_batch,
                        n_thread=n_thread or (os.cpu_count() or 1))
        runner = Runner(model, n_ctx=n_ctx, n_slots=num_parallel, n_batch=n_batch, n_thread=n_thread)
        return Drafter(runner, self.transformer.config.n_vocab)

    def _can_generate(self, what: str) -> None:
        if self.embedding_only:
            raise CapabilityError(f'"{self.name or self.spec.path.name}" does not support {what}')

    # -- tokens ---------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    @property
    def n_ctx(self) -> int:
        return self.runner.n_ctx

    # -- generation -------------------------------------------------------------

    def generate(self, prompt: str, *, cancel: threading.Event | None = None, format: Any = None,
                 **options: Any) -> Stream:
        """Continue ``prompt`` as given (no template). Options as ollama names them;
        ``format`` is ``"json"`` or a JSON schema that the output must match."""
        return self.submit(PromptRequest(Kind.GENERATE, prompt=prompt, raw=True, options=options, format=format,
                                         model=self.name), cancel=cancel)

    def generate_ids(self, ids: Sequence[int], *, cancel: threading.Event | None = None, format: Any = None,
                     **options: Any) -> Stream:
        """Like ``generate``, from token ids (ollama's ``context``, raw mode)."""
        self._can_generate("generate")
        params = sampling_params(self.prompts, options, loaded=self.load_options)
        return self._stream(list(ids), params, cancel, constraint_factory(self.prompts, format))

    def chat(self, messages: Sequence[Mapping[str, Any]], *, cancel: threading.Event | None = None,
             tools: Sequence[Mapping[str, Any]] | None = None, format: Any = None, think: bool | str | None = None,
             **options: Any) -> Stream:
        """Render ``messages`` with the model's chat template, then generate. A conversation
        longer than the context raises ``ContextOverflow`` (``submit`` a ``PromptRequest``
        with ``truncate=True`` to leave out old turns instead, as the server does).
        ``think``: ``True``/``False`` or ``"low"``/``"medium"``/``"high"``/``"max"`` for a
        thinking model (it thinks unless told not to); its reasoning comes in ``chunk.thinking``."""
        return self.submit(PromptRequest(Kind.CHAT, messages=messages, tools=tools, truncate=False, options=options,
                                         format=format, think=parse_think(think), model=self.name), cancel=cancel)

    def submit(self, request: PromptRequest, *, cancel: threading.Event | None = None) -> Stream:
        """Generate for a ``kettle.request.PromptRequest`` (template, system, raw, suffix,
        context, truncation as the server's ``/api/generate`` and ``/api/chat`` do them)."""
        self._can_generate(request.kind.value)
        built = build_prompt(self.prompts, self.n_ctx, request, loaded=self.load_options)
        return self._stream(built.ids, built.params, cancel, built.constraint, built.splitter())

    def _stream(self, ids: list[int], params: SamplingParams, cancel: threading.Event | None,
                constraint: Callable[[], Constraint] | None, splitter: ThinkSplitter | None = None) -> Stream:
        load_ns = self.load_duration if self._first_call else 0
        self._first_call = False
        return Stream(self, ids, params, cancel or threading.Event(), load_ns,
                      constraint() if constraint is not None else None, splitter)

    # -- scoring and embeddings ----------------------------------------------------

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Raw logits (len(ids), n_vocab) of ``ids`` evaluated from an empty context."""
        self._can_generate("logits")
        ids = list(ids)
        with self._lock:
            self.runner.cache.clear(0)
            try:
                n = len(ids)
                return self.runner.forward(ids, range(n), [0] * n, outputs=range(n))
            finally:
                self.runner.cache.clear(0)

    def embed(self, texts: str | Sequence[str], *, truncate: bool = False) -> np.ndarray:
        """L2-normalised embeddings (len(texts), n_embd): an embedding model's (``bert``,
        ``nomic-bert``) pooled as its file says; a chat model's mean-pooled final hidden states.

        Texts are tokenized with special tokens added and parsed (as llama.cpp's
        embedding endpoint does). A text longer than the context is cut to fit
        when ``truncate``, else ``ContextOverflow``.
        """
        if isinstance(texts, str):
            texts = [texts]
        batch = embed_ids(self.prompts, texts)
        with self._lock:
            return self.embed_ids(batch, slot=0, truncate=truncate)[0]

    def embed_ids(self, batch: Sequence[Sequence[int]], *, slot: int = 0, truncate: bool = False) -> tuple[np.ndarray, int]:
        """Embeddings of token-id lists, computed on KV ``slot`` (which no running
        sequence may use; it is cleared after) -> (vectors (n, n_embd), tokens used)."""
        out = np.zeros((len(batch), self.transformer.config.n_embd), dtype=np.float32)  # (n, n_embd)
        used = 0
        n_ctx = self.runner.n_ctx
        for i, ids in enumerate(batch):
            ids = list(ids)
            if len(ids) > n_ctx:
                if not truncate:
                    raise ContextOverflow(len(ids), n_ctx)
                ids = ids[:n_ctx]
            if not ids:
                continue
            used += len(ids)
            n = len(ids)
            if isinstance(self.runner, EncoderRunner):
                out[i] = self.runner.embed(ids)
                continue
            self.runner.cache.clear(slot)
            try:
                hidden = self.runner.forward(ids, range(n), [slot] * n, outputs=range(n), hidden=True)  # (n, n_embd)
            finally:
                self.runner.cache.clear(slot)
            v = hidden.astype(np.float64).mean(axis=0)
            norm = np.linalg.norm(v)
            out[i] = v / norm if norm > 0 else v
        return out, used

    def close(self) -> None:
        for adapter in self.adapters:
            adapter.close()
        if getattr(self, "draft_gguf", None) is not None:
            self.draft_gguf.close()
        self.gguf.close()

    def __repr__(self) -> str:
        return f"<kettle.Model {self.name or self.spec.path} arch={self.transformer.config.arch} num_ctx={self.n_ctx}>"


class Stream:
    """An iterator of ``Chunk``s; ``cancel()`` (from any thread) ends it early.

    ``text()`` runs it to the end and returns the whole text. With a ``splitter`` (a thinking
    model), each chunk's reasoning is in ``chunk.thinking`` and its ``text`` is the answer.
    """

    def __init__(self, model: Model, ids: list[int], params: SamplingParams, cancel: threading.Event, load_ns: int,
                 constraint: Constraint | None = None, splitter: ThinkSplitter | None = None):
        self.model = model
        self.splitter = splitter
        self.constraint = constraint
        self.ids = ids
        self.params = params
        self.cancel_event = cancel
        self.load_ns = load_ns
        self.last: Chunk | None = None
        self._iter = self._run()

    def cancel(self) -> None:
        """Stop generating (from any thread); the stream then ends with ``done_reason == "cancel"``."""
        self.cancel_event.set()

    def close(self) -> None:
        """Cancel and release the model now, without reading the rest."""
        self.cancel_event.set()
        self._iter.close()

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        return next(self._iter)

    def _run(self) -> Iterator[Chunk]:
        model = self.model
        with model._lock:
            seq = model.engine.add(self.ids, self.params, self.cancel_event, self.constraint)
            try:
                for chunk in model.engine.run(seq):
                    if chunk.done and chunk.stats is not None:
                        chunk.stats.load_duration = self.load_ns
                        chunk.stats.total_duration += self.load_ns
                    if self.splitter is not None:
                        chunk.thinking, chunk.text = self.splitter.feed(chunk.text)
                        if chunk.done:
                            thinking, text = self.splitter.finish()
                            chunk.thinking, chunk.text = chunk.thinking + thinking, chunk.text + text
                    self.last = chunk
                    yield chunk
            finally:
                model.engine.release(seq)

    def text(self) -> str:
        return "".join(chunk.text for chunk in self)


def load(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    num_ctx: int | None = None,
    num_thread: int | None = None,
    num_batch: int | None = None,
    num_gpu: int | None = None,
    num_parallel: int = 1,
    draft: str | os.PathLike[str] | None = None,
) -> Model:
    """Load a model by store name (``"smollm2"``, ``"gemma3:270m"``) or ``.gguf`` path.

    ``draft``: a smaller model of the same vocabulary (a store name or ``.gguf`` path) that
    proposes tokens for the model to check (speculative decoding; ``draft_num_predict`` per
    step; the output is the model's own). It replaces the model's Modelfile ``DRAFT``.

    With no name, the bundled default (smollm2) is used. ``num_parallel`` slots
    let that many sequences decode together (the server's continuous batching).
    ``num_thread`` unset or 0: ``KETTLE_NUM_THREAD`` (0 there: every core).
    """
    if num_gpu:
        from kettle.gpu import warn_gpu_request

        warn_gpu_request("num_gpu", num_gpu)
    spec = resolve(name_or_path)
    if draft is not None:
        spec = dataclasses.replace(spec, draft=resolve(draft).path)
    given = {"num_ctx": num_ctx, "num_thread": num_thread, "num_batch": num_batch, "num_gpu": num_gpu}
    load_opts, _ = parse_options({k: v for k, v in given.items() if v is not None}, base=spec.params)
    return Model(spec, load_opts, num_parallel=num_parallel)

"""ctransformers' Python API on kettle's engine: ``AutoModelForCausalLM`` and ``LLM``.

A script written for ctransformers 0.2.27 runs with one changed import line::

    from kettle import AutoModelForCausalLM
    llm = AutoModelForCausalLM.from_pretrained("smollm2", model_type="llama", max_new_tokens=64)
    print(llm("AI is going to", temperature=0))
    for token in llm.generate(llm.tokenize("AI is going to")):
        print(llm.detokenize(token), end="", flush=True)

The ``LLM`` drives the model's ``Runner`` (forward pass + KV cache, slot 0) itself, as
ctransformers drove llama.cpp: ``eval`` appends tokens to the context, ``sample`` draws the
next one from the last logits, ``generate`` loops the two, ``__call__`` turns the tokens
into text pieces (UTF-8 safe, stop strings held back until ruled out).

Prompt caching is ctransformers' ``reset`` flag (``prepare_inputs_for_generation``):
``reset=True`` (the default) keeps the longest common prefix of the new tokens and the
context and evaluates only the rest; ``reset=False`` keeps the whole context and evaluates
the given tokens after it (a continuation).

Where kettle differs on purpose: ``generate`` stops after ``max_new_tokens`` (ctransformers'
ran until EOS); ``tokenize`` parses special-token text (``<|im_start|>``); ``is_eos_token``
is true for every end-of-generation token of the model (``<|im_end|>`` too); ``embed`` is
kettle's mean-pooled, L2-normalised embedding; ``reset()`` does not warn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kettle.api import Model, load
from kettle.compat.config import Config, make_config, to_options
from kettle.compat.locate import (
    check_architecture,
    check_model_type,
    locate_model,
    not_found,
)
from kettle.errors import ContextOverflow, InvalidParameter, KettleError, ModelNotFound
from kettle.gpu import warn_gpu_request
from kettle.request import Kind, PromptRequest, build_prompt, sampling_params
from kettle.sampling import Sampler, SamplingParams, StopMatcher
from kettle.tokenizer import StreamDecoder

__all__ = ["AutoModelForCausalLM", "LLM", "Config"]

SLOT = 0  # the KV-cache slot an LLM uses: kettle.load() gives the model one
GPU_LIBS = ("cuda", "metal")  # ctransformers ``lib`` values that meant a GPU build
ARG = "model_path_or_repo_id"


def _token_ids(tokens: object, vocab_size: int, name: str = "tokens") -> list[int]:
    """``tokens`` (a sequence of ints, or one int) as a list, every id in the vocabulary."""
    if isinstance(tokens, (numbers.Integral, np.integer)) and not isinstance(tokens, bool):
        tokens = [tokens]
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, (Sequence, np.ndarray)):
        raise InvalidParameter(name, tokens, "expected a list of token ids")
    ids: list[int] = []
    for t in list(tokens):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (numbers.Integral, np.integer)):
            raise InvalidParameter(name, t, "every token must be an integer id")
        if not 0 <= int(t) < vocab_size:
            raise InvalidParameter(name, int(t), f"token id outside the vocabulary 0..{vocab_size - 1}")
        ids.append(int(t))
    return ids


class LLM:
    """A loaded model with ctransformers' methods (built by ``AutoModelForCausalLM``).

    ``model`` is a ``kettle.Model`` this object owns (nothing else may use its cache slot).
    """

    def __init__(self, model: Model, config: Config, model_type: str, model_path: str) -> None:
        self._model = model
        self._runner = model.runner
        self._tokenizer = model.tokenizer
        self._config = config
        self._model_type = model_type
        self._model_path = model_path
        self._logits: np.ndarray | None = None  # (n_vocab,) float32 after the last eval
        self._embeddings: list[float] = []
        self._sampler: tuple[SamplingParams, Sampler] | None = None  # for sample() calls

    # -- properties ------------------------------------------------------------------------

    @property
    def model_path(self) -> str:
        return self._model_path

    @property
    def model_type(self) -> str:
        return self._model_type

    @property
    def config(self) -> Config:
        """The defaults of every call; mutable, validated again at each call."""
        return self._config

    @property
    def eos_token_id(self) -> int:
        eos = self._tokenizer.eos_id
        return -1 if eos is None else eos

    @property
    def bos_token_id(self) -> int:
        bos = self._tokenizer.bos_id
        return -1 if bos is None else bos

    @property
    def pad_token_id(self) -> int:
        return self.eos_token_id

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.vocab_size

    @property
    def context_length(self) -> int:
        """The context window (kettle's ``num_ctx``) the model was loaded with."""
        return self._runner.n_ctx

    @property
    def context(self) -> list[int]:
        """The token ids evaluated so far (what the KV cache holds)."""
        return list(self._runner.cache.tokens[SLOT])

    @property
    def logits(self) -> list[float]:
        """Logits after the last ``eval`` (empty before any)."""
        return [] if self._logits is None else self._logits.tolist()

    @property
    def embeddings(self) -> list[float]:
        """The result of the last ``embed``."""
        return list(self._embeddings)

    @property
    def model(self) -> Model:
        """The underlying ``kettle.Model``."""
        return self._model

    # -- tokens ----------------------------------------------------------------------------

    def tokenize(self, text: str, add_bos_token: bool | None = None) -> list[int]:
        """Token ids of ``text``; BOS as the model's metadata says unless ``add_bos_token``."""
        if not isinstance(text, str):
            raise InvalidParameter("text", text, "expected a string")
        if add_bos_token is not None and not isinstance(add_bos_token, bool):
            raise InvalidParameter("add_bos_token", add_bos_token, "expected a boolean or None")
        ids = self._tokenizer.encode(text, add_special=add_bos_token is not False, parse_special=True)
        bos = self._tokenizer.bos_id
        if add_bos_token and bos is not None and ids[:1] != [bos]:
            ids.insert(0, bos)
        return ids

    def detokenize(self, tokens: int | Sequence[int], decode: bool = True) -> str | bytes:
        """Text (or bytes, ``decode=False``) of one token id or a list of them.

        Control tokens render as nothing; invalid UTF-8 is dropped (ctransformers'
        ``errors="ignore"``). ``InvalidParameter`` naming ``tokens`` for a bad id.
        """
        ids = _token_ids(tokens, self.vocab_size)
        data = b"".join(self._tokenizer.token_to_piece(t, special=False) for t in ids)
        if not decode:
            return data
        text = data.decode("utf-8", errors="ignore")
        if ids[:1] == [self.bos_token_id] and text.startswith(" "):
            text = text[1:]  # SentencePiece's space prefix after BOS, as llama.cpp strips it
        return text

    def is_eos_token(self, token: int) -> bool:
        """True if ``token`` ends generation (EOS or any other end-of-generation token)."""
        (tid,) = _token_ids([token], self.vocab_size, name="token")
        return self._tokenizer.is_eog(tid)

    # -- low level: eval / sample ----------------------------------------------------------

    def _settings(self, **given: Any) -> Config:
        """The config with the non-None keyword overrides, validated (names as ctransformers')."""
        return dataclasses.replace(self._config, **{k: v for k, v in given.items() if v is not None})

    @contextlib.contextmanager
    def _threads(self, threads: int) -> Iterator[None]:
        """Run with ``threads`` compute threads (<= 0: as loaded)."""
        saved = self._runner.n_thread
        if threads > 0:
            self._runner.n_thread = threads  # the Runner caps it at numba's thread count
        try:
            yield
        finally:
            self._runner.n_thread = saved

    def eval(self, tokens: Sequence[int], *, batch_size: int | None = None, threads: int | None = None) -> None:
        """Evaluate ``tokens`` after the current context (``batch_size`` at a time).

        Raises ``ContextOverflow`` when they do not fit the context window.
        """
        ids = _token_ids(tokens, self.vocab_size)
        s = self._settings(batch_size=batch_size, threads=threads)
        if not ids:
            return
        runner = self._runner
        start = int(runner.cache.lengths[SLOT])
        if start + len(ids) > runner.n_ctx:
            raise ContextOverflow(start + len(ids), runner.n_ctx)
        with self._threads(s.threads):
            for i in range(0, len(ids), s.batch_size):
                chunk = ids[i : i + s.batch_size]
                first = start + i
                logits = runner.forward(chunk, range(first, first + len(chunk)), [SLOT] * len(chunk),
                                        outputs=[len(chunk) - 1])  # (1, n_vocab)
        self._logits = logits[0]

    def _sampling_params(self, s: Config) -> SamplingParams:
        """The config's sampling fields over the model's PARAMETERs (``kettle.request``)."""
        return sampling_params(self._model.prompts, to_options(s, sampling=True))

    def sample(self, *, top_k: int | None = None, top_p: float | None = None, temperature: float | None = None,
               repetition_penalty: float | None = None, last_n_tokens: int | None = None,
               seed: int | None = None) -> int:
        """Draw the next token from the logits of the last ``eval``.

        Calls with the same settings share one random generator (a fixed ``seed`` gives
        a reproducible sequence of draws).
        """
        if self._logits is None:
            raise KettleError("nothing to sample from: eval() some tokens first")
        s = self._settings(top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty,
                           last_n_tokens=last_n_tokens, seed=seed)
        params = self._sampling_params(s)
        if self._sampler is None or self._sampler[0] != params:
            self._sampler = (params, Sampler(params, self.vocab_size))
        return self._sampler[1].sample(self._logits, self._runner.cache.tokens[SLOT])

    def reset(self) -> None:
        """Forget the context (the KV cache slot is cleared)."""
        self._runner.cache.clear(SLOT)
        self._logits = None

    def prepare_inputs_for_generation(self, tokens: Sequence[int], *, reset: bool | None = None) -> list[int]:
        """The part of ``tokens`` still to evaluate; trims the context to match.

        ``reset=True``: keep the longest common prefix of ``tokens`` and the context (at
        least one token is left to evaluate, for its logits). ``reset=False``: keep the
        whole context; all of ``tokens`` continue it.
        """
        ids = _token_ids(tokens, self.vocab_size)
        if not self._settings(reset=reset).reset:
            return ids
        cache = self._runner.cache
        keep = min(cache.common_prefix(SLOT, ids), max(len(ids) - 1, 0))
        cache.truncate(SLOT, keep)
        return ids[keep:]

    # -- generation ------------------------------------------------------------------------

    def generate(self, tokens: Sequence[int], *, top_k: int | None = None, top_p: float | None = None,
                 temperature: float | None = None, repetition_penalty: float | None = None,
                 last_n_tokens: int | None = None, seed: int | None = None, batch_size: int | None = None,
                 threads: int | None = None, reset: bool | None = None,
                 max_new_tokens: int | None = None) -> Iterator[int]:
        """Yield new token ids after ``tokens`` until an end-of-generation token, the
        context window is full, or ``max_new_tokens`` (default: the config's) were made.

        Arguments are checked here, before the first token is asked for. Each yielded token
        has been evaluated, so stopping the loop early leaves a consistent context.
        """
        ids = _token_ids(tokens, self.vocab_size)
        s = self._settings(top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty,
                           last_n_tokens=last_n_tokens, seed=seed, batch_size=batch_size, threads=threads,
                           reset=reset, max_new_tokens=max_new_tokens)
        if not ids:
            raise InvalidParameter("tokens", [], "needs at least one token to continue from")
        return self._generate(ids, s)

    def _generate(self, ids: list[int], s: Config) -> Iterator[int]:
        sampler = Sampler(self._sampling_params(s), self.vocab_size)
        self.eval(self.prepare_inputs_for_generation(ids, reset=s.reset), batch_size=s.batch_size, threads=s.threads)
        cache = self._runner.cache
        for _ in range(s.max_new_tokens):
            assert self._logits is not None  # eval() of a non-empty list set them
            token = sampler.sample(self._logits, cache.tokens[SLOT])
            if self._tokenizer.is_eog(token):
                return
            if int(cache.lengths[SLOT]) >= self._runner.n_ctx:
                yield token  # the window is full: nothing more can be evaluated
                return
            self.eval([token], batch_size=s.batch_size, threads=s.threads)
            yield token

    def _pieces(self, ids: list[int], s: Config) -> Iterator[str]:
        """Text pieces of the generation: whole UTF-8 characters, cut before a stop string."""
        decoder = StreamDecoder(self._tokenizer)
        stop = StopMatcher(s.stop or ())
        for token in self._generate(ids, s):
            text, hit = stop.feed(decoder.feed(token))
            if text:
                yield text
            if hit:
                return
        text, hit = stop.feed(decoder.flush())
        text += "" if hit else stop.flush()
        if text:
            yield text

    def __call__(self, prompt: str, *, max_new_tokens: int | None = None, top_k: int | None = None,
                 top_p: float | None = None, temperature: float | None = None,
                 repetition_penalty: float | None = None, last_n_tokens: int | None = None,
                 seed: int | None = None, batch_size: int | None = None, threads: int | None = None,
                 stop: Sequence[str] | None = None, stream: bool | None = None,
                 reset: bool | None = None) -> str | Iterator[str]:
        """The continuation of ``prompt``: a string, or with ``stream`` a generator of pieces.

        The streamed pieces join to exactly the string a non-streamed call returns.
        """
        s = self._settings(max_new_tokens=max_new_tokens, top_k=top_k, top_p=top_p, temperature=temperature,
                           repetition_penalty=repetition_penalty, last_n_tokens=last_n_tokens, seed=seed,
                           batch_size=batch_size, threads=threads, stop=stop, stream=stream, reset=reset)
        if not isinstance(prompt, str):
            raise InvalidParameter("prompt", prompt, "expected a string")
        request = PromptRequest(Kind.GENERATE, prompt=prompt, raw=True, options=to_options(s, sampling=True),
                                model=self._model_path)
        ids = build_prompt(self._model.prompts, self.context_length, request).ids  # as tokenize(prompt)
        pieces = self._pieces(ids, s)
        return pieces if s.stream else "".join(pieces)

    # -- embeddings ------------------------------------------------------------------------

    def embed(self, input: str | Sequence[int], *, batch_size: int | None = None,
              threads: int | None = None) -> list[float]:
        """kettle's embedding of a text or token list: mean of the final hidden states,
        L2-normalised (n_embd floats). Clears the context."""
        s = self._settings(batch_size=batch_size, threads=threads)
        if isinstance(input, str):
            with self._threads(s.threads):
                vector = self._model.embed(input)[0]  # (n_embd,)
        else:
            ids = _token_ids(input, self.vocab_size, name="input")
            if not ids:
                raise InvalidParameter("input", [], "needs at least one token")
            self.reset()
            try:
                with self._threads(s.threads):
                    vector = self._model.embed_ids([ids], slot=SLOT)[0][0]  # (n_embd,)
            finally:
                self.reset()
        self._logits = None
        self._embeddings = [float(x) for x in vector]
        return list(self._embeddings)

    def __repr__(self) -> str:
        return f"<kettle.compat LLM {self._model_path} model_type={self._model_type} context_length={self.context_length}>"


class AutoModelForCausalLM:
    """ctransformers' loader: ``AutoModelForCausalLM.from_pretrained(...) -> LLM``."""

    @classmethod
    def from_pretrained(cls, model_path_or_repo_id: str | Path, model_type: str | None = None, *,
                        model_file: str | None = None, config: Config | Mapping[str, Any] | None = None,
                        lib: str | None = None, local_files_only: bool = False, revision: str | None = None,
                        hf: bool = False, **kwargs: Any) -> LLM:
        """Load a ``.gguf`` file, a directory holding one, or a kettle store model.

        ``kwargs`` are ``Config`` fields (``max_new_tokens=256, gpu_layers=50, ...``); an
        unknown one raises ``InvalidParameter`` naming it. ``model_type`` must be a
        ctransformers name that fits the file's architecture (or None / ``"gguf"``).
        ``gpu_layers`` or a GPU ``lib`` warns once that kettle runs on the CPU.
        ``local_files_only`` and ``revision`` concern Hub downloads, which kettle never does.
        """
        if hf:
            raise InvalidParameter("hf", hf, "kettle does not build Hugging Face transformers models; use the returned LLM")
        if lib is not None and not isinstance(lib, str):
            raise InvalidParameter("lib", lib, "expected a library name ('avx2', 'avx', 'basic', 'cuda', 'metal') or a path")
        settings = make_config(config, **kwargs)
        check_model_type(model_type)
        if settings.gpu_layers != 0:
            warn_gpu_request("gpu_layers", settings.gpu_layers)
        elif lib in GPU_LIBS:
            warn_gpu_request("lib", lib)
        target = locate_model(model_path_or_repo_id, model_file, ARG)
        try:
            model = load(target, **to_options(settings, sampling=False))
        except ModelNotFound as e:
            raise not_found(e, ARG) from None
        arch = model.transformer.config.arch
        try:
            check_architecture(model_type, arch)
        except InvalidParameter:
            model.close()
            raise
        return LLM(model, settings, arch, str(model.spec.path))  # model_type: the file's, as ctransformers reports it


"""mlc-llm's legacy ``ChatModule`` (``mlc_chat``, removed in May 2024) on kettle's engine.

A script written for it runs with the import line changed::

    from kettle import ChatModule
    from kettle.callback import StreamToStdout
    cm = ChatModule(model="smollm2")
    cm.generate(prompt="What is the meaning of life?", progress_callback=StreamToStdout(callback_interval=2))
    print(f"Statistics: {cm.stats()}")
    cm.generate(prompt="How many points did you list out?", progress_callback=StreamToStdout(callback_interval=2))
    cm.reset_chat()

The chat is stateful: each ``generate`` renders the whole conversation with the model's own
chat template, and the engine re-evaluates only what the KV cache does not already hold
(the previous turns stay cached). ``stats()`` is mlc's ``"prefill: X tok/s, decode: Y tok/s"``
over every turn since the last ``reset_chat``.

Fields of mlc's configs that describe its compiler, its weights format or its own prompt
format (``model_lib``, ``conv_template``, ``tensor_parallel_shards``, ``seps`` ...) are
accepted and have no effect: kettle reads the GGUF file and renders its chat template.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kettle.api import Model, load
from kettle.compat.locate import locate_model, not_found
from kettle.compat.stats import RuntimeStats
from kettle.errors import ContextOverflow, InvalidParameter, ModelNotFound
from kettle.gpu import check_device
from kettle.request import chat_ids, fit_chat, sampling_params
from kettle.sampling import SamplingParams
from kettle.sampling.fields import Kind, Spec, check_value

__all__ = ["ChatModule", "ChatConfig", "ConvConfig", "GenerationConfig"]


@dataclass
class ConvConfig:
    """Overrides of the conversation (mlc's ``ConvConfig``); every field optional.

    kettle uses ``system`` / ``system_message`` (the system prompt), ``stop_str`` (one more
    stop string), and ``messages`` (``[[role, text], ...]``, the starting history, with
    ``roles`` naming the user and assistant roles). The rest describe mlc's own prompt
    format and have no effect: kettle renders the model's chat template.
    """

    name: str | None = None
    system: str | None = None
    system_message: str | None = None
    roles: list[str] | None = None
    messages: list[list[str]] | None = None
    offset: int | None = None
    separator_style: int | None = None
    seps: list[str] | None = None
    role_msg_sep: str | None = None
    role_empty_sep: str | None = None
    stop_str: str | None = None
    stop_tokens: list[int] | None = None
    prefix_tokens: list[int] | None = None
    add_bos: bool | None = None


@dataclass
class ChatConfig:
    """Overrides of the model's chat settings (mlc's ``ChatConfig``); every field optional.

    Used by kettle: ``temperature``, ``top_p``, ``repetition_penalty``, ``max_gen_len``
    (sampling, per turn; 512 when neither it nor the Modelfile's ``num_predict`` is set,
    as in mlc-chat-config.json), ``mean_gen_len`` (room kept for an answer when old turns must
    leave the window), ``context_window_size`` and ``prefill_chunk_size`` (kettle's
    ``num_ctx`` and ``num_batch``: a change reloads the model), ``conv_config``. The others
    are accepted and have no effect.
    """

    model_lib: str | None = None
    local_id: str | None = None
    conv_template: str | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    top_p: float | None = None
    mean_gen_len: int | None = None
    max_gen_len: int | None = None
    shift_fill_factor: float | None = None
    tokenizer_files: list[str] | None = None
    conv_config: ConvConfig | None = None
    model_category: str | None = None
    model_name: str | None = None
    tensor_parallel_shards: int | None = None
    use_presharded_weights: bool | None = None
    context_window_size: int | None = None
    sliding_window_size: int | None = None
    prefill_chunk_size: int | None = None
    attention_sink_size: int | None = None
    max_batch_size: int | None = None
    opt: str | None = None


@dataclass
class GenerationConfig:
    """Overrides for one ``generate`` call (mlc's ``GenerationConfig``).

    ``stop`` adds to the model's stop strings; ``n`` > 1 returns a list of ``n`` answers to
    the same conversation (the first one is kept in the history).
    """

    temperature: float | None = None
    repetition_penalty: float | None = None
    top_p: float | None = None
    mean_gen_len: int | None = None
    max_gen_len: int | None = None
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    n: int | None = None
    stop: str | list[str] | None = None


# mlc field -> (its range, the kettle/ollama option it sets; None: checked, no effect).
_SAMPLING: dict[str, tuple[Spec, str | None]] = {
    "temperature": (Spec(Kind.FLOAT), "temperature"),
    "top_p": (Spec(Kind.FLOAT, lo=0.0, hi=1.0), "top_p"),
    "repetition_penalty": (Spec(Kind.FLOAT, gt=0.0), "repeat_penalty"),
    "presence_penalty": (Spec(Kind.FLOAT), "presence_penalty"),
    "frequency_penalty": (Spec(Kind.FLOAT), "frequency_penalty"),
    "max_gen_len": (Spec(Kind.INT, lo=1), "num_predict"),
    "mean_gen_len": (Spec(Kind.INT, lo=1), None),  # room for an answer: see ChatModule._prompt_ids
}
_LOAD: dict[str, tuple[Spec, str]] = {
    "context_window_size": (Spec(Kind.INT, lo=1), "num_ctx"),
    "prefill_chunk_size": (Spec(Kind.INT, lo=1), "num_batch"),
}
_N_SPEC = Spec(Kind.INT, lo=1)
DEFAULT_MEAN_GEN_LEN = 128  # mlc-chat-config.json's usual mean_gen_len: room kept for an answer
# mlc-chat-config.json's usual max_gen_len: an answer's length when neither config nor the
# Modelfile (num_predict) says (ollama's unlimited default would let a rambling answer run
# ten context windows long).
DEFAULT_MAX_GEN_LEN = 512
_SLOT = 0  # the KV-cache slot of the conversation: kettle.load() gives the model one
_STOP_SPEC = Spec(Kind.STRINGS)
_ROLES = ("user", "assistant")  # what ConvConfig.roles[0], roles[1] stand for


def _sampling_options(config: ChatConfig | GenerationConfig | None) -> dict[str, Any]:
    """The ollama options a config sets, checked under mlc's field names."""
    out: dict[str, Any] = {}
    if config is None:
        return out
    for name, (spec, option_name) in _SAMPLING.items():
        value = getattr(config, name, None)
        if value is not None:
            value = check_value(name, spec, value)
            if option_name is not None:
                out[option_name] = value
    return out


def _load_options(config: ChatConfig) -> dict[str, int]:
    return {option_name: check_value(name, spec, getattr(config, name))
            for name, (spec, option_name) in _LOAD.items() if getattr(config, name) is not None}


def _message(item: object, roles: Sequence[str] | None = None) -> dict[str, str]:
    """One chat message from a dict, an mlc ``ChatMessage``-like object, or a [role, text] pair."""
    if isinstance(item, Mapping):
        role, content = item.get("role"), item.get("content")
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        role, content = item
    else:
        role, content = getattr(item, "role", None), getattr(item, "content", None)
    if roles and role in roles[: len(_ROLES)]:
        role = _ROLES[list(roles).index(role)]
    if not isinstance(role, str) or role.lower() not in ("system", *_ROLES):
        raise InvalidParameter("prompt", item, "every message needs a role of 'system', 'user' or 'assistant'")
    if content is not None and not isinstance(content, str):
        raise InvalidParameter("prompt", item, "a message's content must be a string")
    return {"role": role.lower(), "content": content or ""}


class ChatModule:
    """A stateful chat over a kettle model (mlc's ``ChatModule``).

    ``model``: a kettle store name, a ``.gguf`` file, or a directory holding one.
    ``device``: ``"auto"``/``"cpu"``; a GPU name (``"cuda:0"``) warns once and runs on the
    CPU. ``model_lib_path`` is accepted and unused (kettle compiles nothing).
    """

    def __init__(self, model: str, device: str = "auto", chat_config: ChatConfig | None = None,
                 model_lib_path: str | None = None) -> None:
        self.device = check_device(device)
        if model_lib_path is not None and not isinstance(model_lib_path, (str, os.PathLike)):
            raise InvalidParameter("model_lib_path", model_lib_path, "expected a path or None")
        self.model_lib_path = model_lib_path
        self.model_path = model
        self.chat_config = self._checked(chat_config)
        self._load_opts = _load_options(self.chat_config)
        self._model = self._load()
        self._history: list[dict[str, str]] = []
        self._stats = RuntimeStats()
        self.reset_chat()
        self._process_system_prompts()

    # -- configuration ---------------------------------------------------------------------

    @staticmethod
    def _checked(chat_config: ChatConfig | None) -> ChatConfig:
        if chat_config is None:
            return ChatConfig()
        if not isinstance(chat_config, ChatConfig):
            raise InvalidParameter("chat_config", chat_config, "expected a ChatConfig")
        conv = chat_config.conv_config
        if conv is not None and not isinstance(conv, ConvConfig):
            raise InvalidParameter("conv_config", conv, "expected a ConvConfig")
        _sampling_options(chat_config)
        _load_options(chat_config)
        return dataclasses.replace(chat_config)

    def _load(self) -> Model:
        target = locate_model(self.model_path, arg="model")
        try:
            return load(target, **self._load_opts)
        except ModelNotFound as e:
            raise not_found(e, "model") from None

    @property
    def kettle_model(self) -> Model:
        """The underlying ``kettle.Model``."""
        return self._model

    @property
    def system_message(self) -> str | None:
        conv = self.chat_config.conv_config
        if conv is None:
            return None
        return conv.system_message if conv.system_message is not None else conv.system

    def _params(self, generation_config: GenerationConfig | None) -> tuple[SamplingParams, int]:
        """Sampling for one turn: model parameters < chat_config < generation_config."""
        if generation_config is not None and not isinstance(generation_config, GenerationConfig):
            raise InvalidParameter("generation_config", generation_config, "expected a GenerationConfig")
        options = {**_sampling_options(self.chat_config), **_sampling_options(generation_config)}
        prompts = self._model.prompts
        if "num_predict" not in options and "num_predict" not in prompts.spec.params:
            options["num_predict"] = DEFAULT_MAX_GEN_LEN
        stops = list(prompts.spec.params.get("stop") or prompts.stop_words)
        conv = self.chat_config.conv_config
        if conv is not None and conv.stop_str:
            stops += list(check_value("stop_str", _STOP_SPEC, conv.stop_str))
        if generation_config is not None and generation_config.stop is not None:
            stops += list(check_value("stop", _STOP_SPEC, generation_config.stop))
        if stops:
            options["stop"] = stops  # mlc's stop strings add to the model's
        n = 1
        if generation_config is not None and generation_config.n is not None:
            n = check_value("n", _N_SPEC, generation_config.n)
        return sampling_params(prompts, options), n

    # -- the chat --------------------------------------------------------------------------

    @property
    def history(self) -> list[dict[str, str]]:
        """The conversation so far (a copy): the system message, if any, then the turns."""
        system = self.system_message
        head = [{"role": "system", "content": system}] if system else []
        return head + [dict(m) for m in self._history]

    def generate(self, prompt: str | Sequence[Any], generation_config: GenerationConfig | None = None,
                 progress_callback: Any = None, stateless: bool = False) -> str | list[str]:
        """The answer to ``prompt`` (a string; or a whole conversation as a list of messages).

        ``progress_callback(message)`` is called every ``callback_interval`` decode steps
        with the answer so far, and ``progress_callback(stopped=True)`` at the end.
        ``stateless`` resets the chat first. Returns a list when ``generation_config.n`` is set.
        """
        params, n = self._params(generation_config)
        interval = None
        if progress_callback is not None:
            interval = getattr(progress_callback, "callback_interval", None)
            if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1 or not callable(progress_callback):
                raise InvalidParameter("progress_callback", progress_callback,
                                       "expected a callback with a positive callback_interval (kettle.callback.StreamToStdout)")
        if stateless:
            self.reset_chat()
        if isinstance(prompt, str):
            history = self._history + [{"role": "user", "content": prompt}]
        elif isinstance(prompt, Sequence) and prompt:
            history = [_message(m) for m in prompt]
        else:
            raise InvalidParameter("prompt", prompt, "expected a string or a non-empty list of messages")
        saved, self._history = self._history, history
        try:
            answers = [self._answer(params, progress_callback, interval) for _ in range(n)]
        except BaseException:
            self._history = saved
            raise
        self._history.append({"role": "assistant", "content": answers[0]})
        return answers if generation_config is not None and generation_config.n is not None else answers[0]

    def _prompt_ids(self) -> list[int]:
        """The conversation's prompt ids, leaving room for an answer of ``mean_gen_len``
        tokens: like mlc's window shift, the oldest turns are left out of the prompt (not
        out of ``history``) until it fits, the window starting with a question
        (``kettle.request.fit_chat``). The system message and the newest question stay; if
        they do not fit with that room, the answer gets what is left of the window, and if
        they do not fit at all, ``ContextOverflow``."""
        prompts = self._model.prompts
        n_ctx = self._model.runner.n_ctx
        room = min(self.chat_config.mean_gen_len or DEFAULT_MEAN_GEN_LEN, n_ctx // 2)
        try:
            return fit_chat(prompts, self.history, None, n_ctx - room, truncate=True, whole_turns=True)[0]
        except ContextOverflow:
            return fit_chat(prompts, self.history, None, n_ctx, truncate=True, whole_turns=True)[0]

    def _answer(self, params: SamplingParams, callback: Any, interval: int | None) -> str:
        """Run one answer through the engine, calling ``callback`` on mlc's schedule."""
        ids = self._prompt_ids()
        engine = self._model.engine
        seq = engine.add(ids, params)
        text = ""
        try:
            while not seq.done:
                for owner, chunk in engine.step():
                    if owner is seq:
                        text += chunk.text
                # mlc samples the first token in prefill, then counts decode steps from 0.
                step = len(seq.generated) - 2
                if callback is not None and step >= 0 and (seq.done or step % interval == 0):
                    callback(text)
        finally:
            engine.release(seq)
        self._stats.add(seq.stats)
        if callback is not None:
            callback(stopped=True)
        return text

    def reset_chat(self, chat_config: ChatConfig | None = None) -> None:
        """Forget the conversation and the statistics; with ``chat_config``, replace the
        overrides (a new ``context_window_size`` / ``prefill_chunk_size`` reloads the model)."""
        config = self.chat_config if chat_config is None else self._checked(chat_config)
        conv = config.conv_config
        roles = conv.roles if conv is not None else None
        start = conv.messages if conv is not None and conv.messages else []
        history = [_message(m, roles) for m in start]
        load_opts = _load_options(config)
        reloaded = load_opts != self._load_opts
        if reloaded:
            self._model.close()
            self._load_opts = load_opts
            self._model = self._load()
        self.chat_config = config
        self._history = history
        self._stats.reset()
        if reloaded:
            self._process_system_prompts()

    def _process_system_prompts(self) -> None:
        """Evaluate the fixed head of every prompt (system prompt, starting history, the
        user-turn marker) into the KV cache, as mlc does before the first question; each
        turn then reuses it. The head is the common token prefix of the conversation
        rendered with two different questions (templates differ in where the system
        prompt goes). Also brings kettle's compiled kernels in before anything is timed."""
        prompts = self._model.prompts
        a, b = (chat_ids(prompts, self.history + [{"role": "user", "content": q}]) for q in ("A", "B"))
        head = 0
        while head < min(len(a), len(b)) and a[head] == b[head]:
            head += 1
        runner = self._model.runner
        cache = runner.cache
        keep = min(cache.common_prefix(_SLOT, a[:head]), head)
        if head >= runner.n_ctx or keep == head:
            return
        cache.truncate(_SLOT, keep)
        runner.forward(a[keep:head], range(keep, head), [_SLOT] * (head - keep))

    def stats(self, verbose: bool = False) -> str:
        """mlc's runtime statistics text: ``"prefill: X tok/s, decode: Y tok/s"``."""
        return self._stats.text(verbose)

    def embed_text(self, input: str) -> np.ndarray:
        """kettle's embedding of ``input`` (n_embd,), mean-pooled and L2-normalised."""
        if not isinstance(input, str):
            raise InvalidParameter("input", input, "expected a string")
        return self._model.embed(input)[0]

    def __repr__(self) -> str:
        return f"<kettle.compat ChatModule {self.model_path} turns={len(self._history) // 2}>"

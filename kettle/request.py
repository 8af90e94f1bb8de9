"""One path from a request to prompt token ids, sampling params, stop words and a constraint.

Every caller builds its prompt here: the Python API (``kettle.api.Model``), the server's
``/api/generate``, ``/api/chat`` and their OpenAI translations (``kettle.server.generation``),
the CLI without a server (``kettle.cli.local_backend``) and the compat APIs (ctransformers,
mlc). The same ``PromptRequest`` therefore gives the same ids whoever sends it.

    req = PromptRequest(Kind.CHAT, messages=[{"role": "user", "content": "Hi"}], options={"temperature": 0})
    built = build_prompt(model.prompts, model.n_ctx, req)   # built.ids, built.params, built.constraint

What a request may say, as ollama's ``/api/generate`` and ``/api/chat`` define it:

* ``Kind.GENERATE``: ``prompt`` rendered as one user turn (after ``system`` when given) with
  the model's template, or with ``template`` when the request overrides it; ``suffix`` is
  fill-in-the-middle: through a template that names ``.Suffix``, else through the
  vocabulary's FIM tokens (``infill_ids``, llama-server's infill), else ``CapabilityError``;
  ``context`` (the ids an earlier answer returned) comes first, its BOS not repeated; ``raw``
  skips the template (and the system prompt) and tokenizes ``prompt`` as given.
* ``Kind.CHAT``: ``messages`` after the Modelfile's MESSAGEs, the Modelfile's SYSTEM when none
  is given, ``tools`` passed to the template (a template that does not name them:
  ``CapabilityError``, ollama's ``does not support tools``; ``tool_choice`` ``none`` hides
  them, ``required`` or a named function constrains the answer to one call: see
  ``kettle.toolcalls``); when the prompt does not fit ``n_ctx`` (less
  ``reserve`` tokens kept for the answer), the fewest oldest turns are left out (every system
  message and the newest message stay; ollama's rule), or with ``truncate=False``
  ``ContextOverflow``.
* images: refused (``CapabilityError``), kettle's models read no pixels.
* ``think``: a ``kettle.thinking.Think`` (None: not set). The template is told (``.Think`` /
  ``enable_thinking``); a model whose template cannot think refuses ``think: true``
  (``CapabilityError``) and a thinking model thinks unless told not to. ``Prompt.splitter()``
  then separates the answer's thinking from its content (``kettle.thinking``).
* ``shift``: when the answer fills the context window, shift it (keep ``num_keep`` tokens,
  leave out half of the rest; ``SamplingParams.shift``), else stop with ``"length"``.
* ``options``: ollama's option names over the model's PARAMETERs (``stop`` defaults to the
  template's stop words); ``format``: ``"json"`` or a JSON schema, compiled to a constraint
  factory (``InvalidParameter`` naming the first bad ``pattern``).

Embedding inputs become ids with ``embed_ids`` (special tokens added and parsed, as
llama.cpp's embedding endpoint does).

This module knows nothing of HTTP: errors are ``kettle.errors`` types, which the server maps
to status codes.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kettle.errors import CapabilityError, ContextOverflow, InvalidParameter
from kettle.options import LoadOptions, parse_options
from kettle.prompt import PromptBuilder
from kettle.sampling import SamplingParams
from kettle.sampling.constrained import JSON_OPTIONS, compile_format, compile_lark
from kettle.thinking import Style, Think, ThinkSplitter, new_splitter, resolve_think, thinking_style
from kettle.tokenizer.markers import FIM_ROLES
from kettle.toolcalls import AUTO, ToolChoice, call_grammar, call_syntax, parse_tool_choice, visible_tools

MAX_TRUNCATION_RENDERS = 64  # renders a chat truncation may try (binary search: 2**64 turns)
TAIL_TOKENS = 8  # prompt tokens decoded to see whether the template opened the thinking
LOAD_TIME = ("num_ctx", "num_batch", "num_thread")  # options that only kettle.load() may change


class Kind(enum.Enum):
    GENERATE = "generate"
    CHAT = "chat"


@dataclass(frozen=True)
class PromptRequest:
    """A generate or chat request, whoever sent it (see the module docstring)."""

    kind: Kind
    prompt: str = ""
    suffix: str = ""
    system: str | None = None  # generate: replaces the Modelfile's SYSTEM
    template: str | None = None  # generate: replaces the model's template for this request
    context: Sequence[int] | None = None  # generate: ids an earlier answer returned
    raw: bool = False  # generate: no template, ``prompt`` tokenized as given
    messages: Sequence[Mapping[str, Any]] = ()
    tools: Sequence[Mapping[str, Any]] | None = None  # chat: function schemas for the template
    tool_choice: Any = None  # chat: "auto" (None), "none", "required" or a named function (kettle.toolcalls)
    truncate: bool = True  # chat: leave out old turns that do not fit (else ContextOverflow)
    shift: bool = True  # shift the context window when the answer fills it (else done_reason "length")
    reserve: int = 0  # chat: tokens kept free for the answer when truncating
    images: int = 0  # how many images came with the request: any is refused
    options: Mapping[str, Any] | None = None
    format: Any = None
    think: Think | None = None  # None: not set (a thinking model thinks)
    model: str = ""  # the name the request used, for error messages


@dataclass
class Prompt:
    """What the engine needs for one generation."""

    ids: list[int]
    params: SamplingParams
    stop_words: tuple[str, ...]  # the template's defaults (already in ``params.stop`` unless overridden)
    constraint: Callable[[], Any] | None = None  # a factory of fresh grammar constraints
    dropped: int = 0  # chat messages left out to fit the context
    extra: dict[str, Any] = field(default_factory=dict)
    think: Think | None = None  # as resolved for the model (None: it cannot think, or raw)
    style: Style | None = None  # the thinking markers of its template
    tail: str = ""  # the end of the prompt text (a template may open the thinking itself)

    def splitter(self) -> ThinkSplitter | None:
        """A fresh splitter of one answer into thinking and content (None: nothing to split)."""
        return new_splitter(self.style, self.tail, self.think)


def refuse_images(model: str, count: int) -> None:
    if count:
        raise CapabilityError(f'"{model}" does not support image input')


def build_prompt(prompts: PromptBuilder, n_ctx: int, req: PromptRequest,
                 loaded: LoadOptions | None = None) -> Prompt:
    """Prompt ids, sampling params, stop words and constraint for ``req`` on a model whose
    templates and tokenizer are ``prompts`` and whose context holds ``n_ctx`` tokens.

    ``loaded``: the model's load-time options; when given, a request naming another value of
    one of them is refused (the Python API, which cannot reload). Raises ``InvalidParameter``,
    ``CapabilityError``, ``ContextOverflow`` or ``TemplateError``.
    """
    refuse_images(req.model or prompts.spec.name, req.images)
    for m in req.messages:
        if isinstance(m, Mapping) and m.get("images"):
            refuse_images(req.model or prompts.spec.name, len(m["images"]))
    dropped = 0
    choice = parse_tool_choice(req.tool_choice, req.tools) if req.kind is Kind.CHAT else AUTO
    tools = visible_tools(req.tools, choice) if req.kind is Kind.CHAT else None
    if tools and not prompts.template.renders_tools:
        raise CapabilityError(f'"{req.model or prompts.spec.name}" does not support tools')  # ollama's words
    style = think = None
    if not req.raw:
        if req.kind is Kind.GENERATE and req.template is not None:
            prompts = prompts.with_template(req.template)
        style = thinking_style(prompts.template.source)
        think = resolve_think(req.think, style, req.model or prompts.spec.name)
    if req.kind is Kind.CHAT:
        ids, dropped = fit_chat(prompts, req.messages, tools, n_ctx - max(req.reserve, 0), req.truncate,
                                think=think)
        stops = prompts.stop_words
    elif req.raw:
        ids = prompts.tokenizer.encode(req.prompt, add_special=True, parse_special=True)
        stops = ()
    else:
        ids, stops = _generate_ids(prompts, req, think)
    if not ids:
        raise InvalidParameter("prompt", req.prompt, "the prompt is empty after templating: nothing to continue from")
    if len(ids) >= n_ctx:
        raise ContextOverflow(len(ids) + 1, n_ctx)
    params = sampling_params(prompts, req.options, stops, loaded)
    if not req.shift:
        params = dataclasses.replace(params, shift=False)
    tail = prompts.tokenizer.decode(ids[-TAIL_TOKENS:]) if style is not None else ""
    constraint = tool_constraint(prompts, tools, choice, req.format) or constraint_factory(prompts, req.format)
    return Prompt(ids, params, tuple(stops), constraint, dropped,
                  think=think if style is not None else None, style=style, tail=tail)


def sampling_params(prompts: PromptBuilder, options: Mapping[str, Any] | None, stops: Sequence[str] = (),
                    loaded: LoadOptions | None = None) -> SamplingParams:
    """``options`` over the model's PARAMETERs over defaults; ``stops`` unless ``stop`` is set."""
    base = dict(prompts.spec.params)
    if stops and "stop" not in base:
        base["stop"] = list(stops)
    load, params = parse_options(options, base=base)
    if loaded is not None and options:
        for name in LOAD_TIME:
            if options.get(name) is not None and getattr(load, name) != getattr(loaded, name):
                raise InvalidParameter(name, options[name], "a load-time option: pass it to kettle.load()")
    return params


def _generate_ids(prompts: PromptBuilder, req: PromptRequest, think: Think | None) -> tuple[list[int], tuple[str, ...]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": req.system}] if req.system is not None else []
    msgs.append({"role": "user", "content": req.prompt})
    if req.suffix and ".Suffix" not in prompts.template.source:
        return infill_ids(prompts, req), ()
    text = prompts.template.render(prompts.conversation(msgs), suffix=req.suffix,
                                   bos_token=prompts.bos_text, eos_token=prompts.eos_text, think=think)
    ids = prompts.tokenize_prompt(text)
    if req.context:
        vocab = prompts.tokenizer.vocab_size
        bad = [t for t in req.context if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab]
        if bad:
            raise InvalidParameter("context", bad[0], f"token id outside 0..{vocab - 1}")
        bos = prompts.tokenizer.bos_id
        ids = list(req.context) + (ids[1:] if ids and ids[0] == bos else ids)
    return ids, prompts.stop_words


def infill_ids(prompts: PromptBuilder, req: PromptRequest) -> list[int]:
    """Fill-in-the-middle without a template that names ``.Suffix``, from the vocabulary's FIM
    tokens as llama-server's infill builds it: BOS (if the model adds one), ``FIM_PRE``
    prefix ``FIM_SUF`` suffix ``FIM_MID``; the model writes the middle. ``CapabilityError``
    when the vocabulary has no FIM tokens."""
    tok = prompts.tokenizer
    pre, suf, mid = (tok.special_id(role) for role in FIM_ROLES)
    if pre is None or suf is None or mid is None:
        raise CapabilityError(f'"{req.model or prompts.spec.name}" does not support insert')
    ids = [pre, *tok.encode(req.prompt, add_special=False), suf, *tok.encode(req.suffix, add_special=False), mid]
    if tok.add_bos and tok.bos_id is not None and tok.bos_id >= 0:
        ids.insert(0, tok.bos_id)
    return ids


def chat_ids(prompts: PromptBuilder, messages: Sequence[Mapping[str, Any]],
             tools: Sequence[Mapping[str, Any]] | None = None, think: Think | None = None) -> list[int]:
    """Prompt ids of ``messages`` rendered with the model's chat template, as they are."""
    return prompts.tokenize_prompt(prompts.render_chat(messages, tools=tools, think=think))


def fit_chat(prompts: PromptBuilder, messages: Sequence[Mapping[str, Any]],
             tools: Sequence[Mapping[str, Any]] | None, n_ctx: int, truncate: bool,
             whole_turns: bool = False, think: Think | None = None) -> tuple[list[int], int]:
    """Prompt ids for ``messages`` that leave room for one token in ``n_ctx``, and how many
    messages were left out: when too long and ``truncate``, the fewest oldest ones, keeping
    every system message and the newest message (ollama's rule). ``ContextOverflow`` else.

    ``whole_turns``: the kept conversation starts with a user message (mlc's window shift;
    templates that check that roles alternate accept it), so turns leave in pairs."""
    msgs = list(messages)

    def ids_without(gone: set[int]) -> list[int]:
        return chat_ids(prompts, [m for i, m in enumerate(msgs) if i not in gone], tools, think)

    ids = ids_without(set())
    if len(ids) < n_ctx:
        return ids, 0
    droppable = [i for i, m in enumerate(msgs[:-1]) if m.get("role") != "system"]
    cuts = list(range(1, len(droppable) + 1))  # how many of the oldest droppable may go
    if whole_turns:  # the first message kept after the cut must be a question
        cuts = [k for k in cuts if msgs[droppable[k] if k < len(droppable) else -1].get("role") == "user"]
    if not truncate or not cuts:
        raise ContextOverflow(len(ids) + 1, max(n_ctx, 0))
    lo, hi = 0, len(cuts) - 1  # the fewest oldest turns to drop, by binary search over the cuts
    best: tuple[list[int], int] | None = None
    for _ in range(MAX_TRUNCATION_RENDERS):
        if lo > hi:
            break
        mid = (lo + hi) // 2
        candidate = ids_without(set(droppable[:cuts[mid]]))
        if len(candidate) < n_ctx:
            best, hi = (candidate, cuts[mid]), mid - 1
        else:
            lo = mid + 1
    if best is None:
        raise ContextOverflow(len(ids_without(set(droppable[:cuts[-1]]))) + 1, max(n_ctx, 0))
    return best


def embed_ids(prompts: PromptBuilder, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each embedding input: special tokens added and parsed."""
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidParameter(f"input[{i}]", text, "expected a string")
        out.append(prompts.tokenizer.encode(text, add_special=True, parse_special=True))
    return out


def tool_constraint(prompts: PromptBuilder, tools: Sequence[Mapping[str, Any]] | None, choice: ToolChoice,
                    fmt: Any) -> Callable[[], Any] | None:
    """A forced call's grammar (``kettle.toolcalls``) in the template's call syntax, or None."""
    if not tools or not choice.forced:
        return None
    if fmt is not None and fmt != "":
        raise InvalidParameter("tool_choice", choice.name or choice.mode.value,
                               "a forced tool call and format exclude each other")
    grammar = call_grammar(tools, choice, call_syntax(prompts.template.source), JSON_OPTIONS)
    return compile_lark(prompts.tokenizer, grammar, "tool_choice")


def constraint_factory(prompts: PromptBuilder, fmt: Any) -> Callable[[], Any] | None:
    """``format`` compiled for this tokenizer; a refused schema names its first bad ``pattern``."""
    try:
        return compile_format(prompts.tokenizer, fmt)
    except InvalidParameter as e:
        raise _pattern_error(fmt) or e from None


def _patterns(schema: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, regex) of every ``pattern`` and ``patternProperties`` key in a JSON schema."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            at = f"{path}.{key}"
            if key == "pattern" and not isinstance(value, dict):
                yield at, value
            elif key == "patternProperties" and isinstance(value, dict):
                for regex, sub in value.items():
                    yield f"{at}[{regex!r}]", regex
                    yield from _patterns(sub, f"{at}[{regex!r}]")
            else:
                yield from _patterns(value, at)
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _patterns(value, f"{path}[{i}]")


def _pattern_error(fmt: Any) -> InvalidParameter | None:
    """When a ``format`` schema was refused: the error naming the first pattern that is not a
    string or not a regular expression, if one is at fault."""
    import llguidance

    compiler = llguidance.RegexCompiler()
    for path, regex in _patterns(fmt, "format"):
        if not isinstance(regex, str):
            return InvalidParameter(path, regex, "expected a regular expression string")
        try:
            compiler.compile(regex)
        except ValueError as e:
            detail = str(e).partition("regex parse error:")[2].split("error:")[-1].strip()
            reason = detail.splitlines()[0] if detail else "not accepted"
            return InvalidParameter(path, regex, f"not a valid regular expression: {reason}")
    return None

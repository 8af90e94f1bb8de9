"""One function per ``kettle`` command: ``(args, io) -> exit code``.

Each runs against a ``Backend`` (a server at ``KETTLE_HOST`` or this process,
see ``backend.py``) and prints what ollama's command prints. Errors are raised
as ``KettleError``; ``main`` prints them as ``Error: <message>`` and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kettle import config
from kettle.cli.backend import Backend, connect
from kettle.cli.display import human_bytes, human_time, render_table, show_info
from kettle.cli.progress import ProgressDisplay
from kettle.cli.reply import print_summary, stream_reply
from kettle.errors import KettleError, ModelfileError, ModelNotFound

ID_CHARS = 12  # list/ps show the first 12 hex digits of the manifest digest
INTERRUPTED = 130  # exit code after Ctrl-C, as a shell reports SIGINT


class UsageError(KettleError):
    """The command line asks for something that cannot be done."""


@dataclass
class IO:
    """Where a command reads and writes (the real streams, or a test's)."""

    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)


# -- models --------------------------------------------------------------------------


def pull_with_progress(backend: Backend, model: str, io: IO, insecure: bool = False) -> None:
    display = ProgressDisplay(io.stderr)
    try:
        backend.pull(model, display, insecure=insecure)
    finally:
        display.close()


def cmd_pull(args: argparse.Namespace, io: IO) -> int:
    with _backend() as backend:
        pull_with_progress(backend, args.model, io, args.insecure)
    return 0


def cmd_push(args: argparse.Namespace, io: IO) -> int:
    with _backend() as backend:
        display = ProgressDisplay(io.stderr, verb="pushing")
        try:
            backend.push(args.model, display, insecure=args.insecure)
        finally:
            display.close()
    return 0


def read_modelfile(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None


def cmd_create(args: argparse.Namespace, io: IO) -> int:
    from kettle.modelfile import parse

    path = Path(args.file).expanduser()
    try:
        modelfile = parse(read_modelfile(path))
    except ModelfileError as e:
        raise ModelfileError(f"{args.file}: {e}") from None
    with _backend() as backend:
        display = ProgressDisplay(io.stderr)
        try:
            backend.create(args.model, modelfile, path.resolve().parent, display, quantize=args.quantize or None)
        except ModelfileError as e:
            raise ModelfileError(f"{args.file}: {e}") from None
        finally:
            display.close()
    return 0


def cmd_convert(args: argparse.Namespace, io: IO) -> int:
    """A Hugging Face checkpoint folder -> GGUF (in this process; no server is involved)."""
    from kettle.convert import convert

    out = convert(args.hf_dir, args.outfile, args.outtype, progress=lambda line: io.stderr.write(f"writing {line}\n"))
    io.stdout.write(f"{out}\n")
    return 0


def cmd_quantize(args: argparse.Namespace, io: IO) -> int:
    """IN.gguf -> OUT.gguf quantized to TYPE (in this process; no server is involved)."""
    from kettle.quant.file import quantize_file

    if Path(args.input).resolve() == Path(args.output).resolve():
        raise UsageError("the output must be another file than the input")
    quantize_file(args.input, args.output, args.type, allow_requantize=args.allow_requantize,
                  progress=lambda line: io.stderr.write(line + "\n"))
    io.stdout.write(f"{args.output}\n")
    return 0


SHOW_FIELDS = ("license", "modelfile", "parameters", "system", "template")


def cmd_show(args: argparse.Namespace, io: IO) -> int:
    chosen = [name for name in SHOW_FIELDS if getattr(args, name)]
    if len(chosen) > 1:
        raise UsageError("only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified")
    with _backend() as backend:
        resp = backend.show(args.model)
    if not chosen:
        io.stdout.write(show_info(resp))
        return 0
    text = str(resp.get(chosen[0]) or "")
    io.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_list(args: argparse.Namespace, io: IO) -> int:
    with _backend() as backend:
        models = backend.list()
    rows = [
        [m.get("name", ""), str(m.get("digest", ""))[:ID_CHARS], human_bytes(int(m.get("size") or 0)),
         human_time(m.get("modified_at"), "Never")]
        for m in models
        if not args.prefix or str(m.get("name", "")).startswith(args.prefix)
    ]
    io.stdout.write(render_table(["NAME", "ID", "SIZE", "MODIFIED"], rows))
    return 0


def processor(size: int, size_vram: int) -> str:
    """ollama's PROCESSOR column: where a loaded model's bytes are."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = round((size - size_vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def cmd_ps(args: argparse.Namespace, io: IO) -> int:
    with _backend() as backend:
        models = backend.ps()
    rows = []
    for m in models:
        size, vram = int(m.get("size") or 0), int(m.get("size_vram") or 0)
        context = m.get("context_length")
        rows.append([
            m.get("name", ""), str(m.get("digest", ""))[:ID_CHARS], human_bytes(size), processor(size, vram),
            str(context) if context else "", human_time(m.get("expires_at"), "Never"),
        ])
    io.stdout.write(render_table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows))
    return 0


def cmd_stop(args: argparse.Namespace, io: IO) -> int:
    with _backend() as backend:
        backend.stop(args.model)
    return 0


def cmd_cp(args: argparse.Namespace, io: IO) -> int:
    with _backend() as backend:
        backend.copy(args.source, args.destination)
    io.stdout.write(f"copied '{args.source}' to '{args.destination}'\n")
    return 0


def cmd_rm(args: argparse.Namespace, io: IO) -> int:
    with _backend() as backend:
        for name in args.models:
            backend.delete(name)
            io.stdout.write(f"deleted '{name}'\n")
    return 0


def cmd_serve(args: argparse.Namespace, io: IO) -> int:
    from kettle.server import serve

    host, port = config.host()
    _compile_notice(io)
    serve(host, port)
    return 0


def version_lines(client: str, server: str | None) -> list[str]:
    """``--version``: the client's version, and the server's when one answers and differs."""
    if server is None or server == client:
        return [f"kettle version is {client}"]
    return [f"kettle server version is {server}", f"Warning: client version is {client}"]


def cmd_version(io: IO) -> int:
    from kettle import __version__

    backend = connect()
    try:
        server = backend.version() if backend.remote else None
    finally:
        backend.close()
    io.stdout.write("\n".join(version_lines(__version__, server)) + "\n")
    return 0


# -- run -----------------------------------------------------------------------------


def split_model_and_prompt(words: list[str]) -> tuple[str, list[str]]:
    """``run [MODEL] [PROMPT...]``: which word, if any, names the model.

    The first word is the model when it is a valid model name (``smollm2``,
    ``gemma3:270m``, ``me/mario``) or an existing ``.gguf`` file; otherwise
    (it has a space, ``?``, ``!``... which no name may contain) every word is
    the prompt and the default model (smollm2) answers. No words: the default
    model, interactively. The rule looks at the text only, never at the store,
    so the same command means the same thing on every machine.
    """
    from kettle.store import DEFAULT_MODEL, parse_name

    if not words:
        return DEFAULT_MODEL, []
    first = words[0]
    if parse_name(first).is_valid() or (first.endswith(".gguf") and Path(first).is_file()):
        return first, words[1:]
    return DEFAULT_MODEL, words


def ensure_model(backend: Backend, model: str, io: IO, prompt_words: list[str], insecure: bool = False) -> None:
    """Pull ``model`` when the store lacks it (as ``ollama run`` does); the registry's ModelNotFound
    gets a hint when the model word may have been meant as a prompt."""
    if backend.exists(model):
        return
    from kettle.store import DEFAULT_MODEL

    try:
        pull_with_progress(backend, model, io, insecure)
    except ModelNotFound as e:
        if not prompt_words:
            e.args = (f"{e}; to send {model!r} as a prompt to the default model: kettle run {DEFAULT_MODEL} {model}",)
        raise


def _read_stdin(io: IO) -> str | None:
    """Piped input (None when stdin is a terminal)."""
    if io.stdin is None or io.stdin.isatty():
        return None
    return io.stdin.read()


def cmd_run(args: argparse.Namespace, io: IO) -> int:
    from kettle.cli.repl import Repl, Session

    model, words = split_model_and_prompt(list(args.words))
    piped = _read_stdin(io)
    prompts = [p for p in [piped or "", *words] if p]
    interactive = piped is None and not words
    if args.format and args.format != "json":
        raise UsageError(f"unsupported --format {args.format!r}: only 'json' is")
    think = think_value(args.think, args.hidethinking)
    # A .gguf file is not a store name a server could resolve: it always runs in this process.
    with _backend(local=model.endswith(".gguf") and Path(model).is_file()) as backend:
        ensure_model(backend, model, io, words, args.insecure)
        if not backend.remote:
            _compile_notice(io)
        if _is_embedding_model(backend, model):  # ollama prints the embedding of the text as JSON
            if not prompts:
                raise UsageError(f'embedding models require input text. Usage: kettle run {model} "your text here"')
            io.stdout.write(json.dumps(backend.embed(model, [" ".join(prompts)])[0]) + "\n")
            return 0
        if interactive:
            backend.load(model)
            session = Session(model, format=args.format or "", verbose=args.verbose,
                              wordwrap=not args.nowordwrap, keep_alive=args.keepalive, think=think,
                              hide_thinking=args.hidethinking)
            _replay_messages(backend, model, io)
            return Repl(backend, session, io.stdout, io.stderr).run()
        if not prompts:
            return 0  # an empty pipe: nothing to answer
        request: dict[str, Any] = {"model": model, "prompt": " ".join(prompts)}
        if args.format:
            request["format"] = args.format
        if args.keepalive is not None:
            request["keep_alive"] = args.keepalive
        if think is not None:
            request["think"] = think
        wrap = shutil.get_terminal_size().columns if io.stdout.isatty() and not args.nowordwrap and piped is None else None
        reply = stream_reply(backend.generate(request), io.stdout, wrap, io.stderr, args.hidethinking)
        io.stdout.write("\n" if reply.cancelled else "\n\n")
        io.stdout.flush()
        if reply.cancelled:
            return INTERRUPTED
        if args.verbose:
            print_summary(reply.final, io.stderr)
    return 0


def think_value(flag: str | None, hide: bool) -> bool | str | None:
    """``--think[=VALUE]`` as a request's ``think``; None when neither it nor ``--hidethinking``
    was given (a thinking model then thinks, as ollama's)."""
    if flag is None:
        return None
    if flag.lower() in ("true", "false"):
        return flag.lower() == "true"
    from kettle.thinking import LEVELS

    if flag not in LEVELS:
        raise UsageError(f"invalid --think value {flag!r}: use true, false, " + ", ".join(LEVELS))
    return flag


def _compile_notice(io: IO) -> None:
    """One line on stderr when this process will compile the kernels (numba's cache is empty)."""
    from kettle.ops._jit import COMPILE_NOTICE, kernels_cached

    if not kernels_cached():
        io.stderr.write(COMPILE_NOTICE + "\n")
        io.stderr.flush()


def _is_embedding_model(backend: Backend, model: str) -> bool:
    try:
        return "embedding" in (backend.show(model).get("capabilities") or [])
    except KettleError:  # a .gguf path run in-process has no store entry: a chat model is assumed
        return False


def _replay_messages(backend: Backend, model: str, io: IO) -> None:
    """Show the model's MESSAGE history before the first prompt, as ollama does."""
    try:
        messages = backend.show(model).get("messages") or []
    except KettleError:  # a .gguf path run in-process has no store entry, so no MESSAGEs
        return
    for m in messages:
        if m.get("role") == "user":
            io.stdout.write(f">>> {m.get('content', '')}\n")
        elif m.get("role") == "assistant":
            io.stdout.write(f"{m.get('content', '')}\n\n")


@contextlib.contextmanager
def _backend(local: bool = False) -> Iterator[Backend]:
    """``with _backend() as backend:`` the server or (``local``, or none answers) this process, closed afterwards."""
    backend = connect(local=local)
    try:
        yield backend
    finally:
        backend.close()

'''The interactive session of ``kettle run``: ollama's REPL (``cmd/interactive.go``).

Input::

    >>> a message                  sent as a user turn, the answer streams back
    >>> """                        starts a multi-line message; a line ending
    ... more lines                 in """ ends it (""" on one line works too)
    ... end"""
    >>> /set parameter NAME VALUE  /set system TEXT (or """...""")
    >>> /set format json | noformat | verbose | quiet | wordwrap | nowordwrap | think [LEVEL] | nothink
    >>> /show info | license | modelfile | parameters | system | template
    >>> /load MODEL  /save MODEL  /clear  /bye (/exit)  /? (/help)

Keys: Ctrl-D exits; Ctrl-C stops a streaming answer, or at the prompt drops
the line typed so far (on an empty line it says how to leave). Line editing
and in-memory history come from Python's ``readline`` where it exists.

The session keeps the conversation (``messages``, sent whole each turn: the
engine reuses the cached prefix), the SYSTEM set here, and the parameters set
here, which go out as ``options`` with every request. A reply stopped with
Ctrl-C is dropped together with its question, so the next turn does not see
two user turns in a row (ollama keeps the question).
'''

from __future__ import annotations

import enum
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kettle.cli.backend import Backend
from kettle.cli.display import PARAM_NAME_WIDTH, go_value, show_info
from kettle.cli.reply import print_summary, stream_reply
from kettle.errors import InvalidParameter, KettleError

MULTILINE_QUOTE = '"""'
PROMPT, ALT_PROMPT = ">>> ", "... "
STOP = "stop"  # the one parameter that takes several values

USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""

USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set think [LEVEL]     Enable thinking (LEVEL: high, medium, low, max)
  /set nothink           Disable thinking
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
"""

USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
"""

USAGE_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit kettle (/bye)
"""

USAGE_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter stop <string> <string> ...   Set the stop parameters
"""


class Multiline(enum.Enum):
    NONE = enum.auto()
    PROMPT = enum.auto()  # a user message between """ and """
    SYSTEM = enum.auto()  # /set system """ ... """


@dataclass
class Session:
    """What the REPL remembers between turns."""

    model: str
    messages: list[dict[str, str]] = field(default_factory=list)
    system: str = ""  # set with /set system ("" = the model's own)
    options: dict[str, Any] = field(default_factory=dict)  # /set parameter, typed
    format: str = ""  # "json" after /set format json
    verbose: bool = False
    wordwrap: bool = True
    keep_alive: str | None = None
    think: bool | str | None = None  # /set think, /set nothink (None: the model's default)
    hide_thinking: bool = False

    def set_system(self, text: str) -> None:
        """Replace a trailing system message, else append one (as ollama does)."""
        self.system = text
        message = {"role": "system", "content": text}
        if self.messages and self.messages[-1]["role"] == "system":
            self.messages[-1] = message
        else:
            self.messages.append(message)

    def clear(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def chat_request(self) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model, "messages": list(self.messages)}
        if self.options:
            request["options"] = dict(self.options)
        if self.format:
            request["format"] = self.format
        if self.keep_alive is not None:
            request["keep_alive"] = self.keep_alive
        if self.think is not None:
            request["think"] = self.think
        return request


def parse_parameter(name: str, values: list[str]) -> Any:
    """``/set parameter NAME VALUE...`` -> the typed value (``stop`` takes every value)."""
    from kettle.options import coerce_parameter

    if name == STOP:
        return [coerce_parameter(name, v) for v in values]
    if len(values) != 1:
        raise InvalidParameter(name, " ".join(values), "expected one value")
    return coerce_parameter(name, values[0])


def session_modelfile(session: Session):
    """The Modelfile ``/save`` creates: FROM the model, with this session on top."""
    from kettle.modelfile import Command, Instruction, Modelfile, format_parameter

    commands = [Command(Instruction.FROM, session.model)]
    if session.system:
        commands.append(Command(Instruction.SYSTEM, session.system))
    for key in sorted(session.options):
        value = session.options[key]
        for v in value if isinstance(value, list) else [value]:
            commands.append(Command(Instruction.PARAMETER, format_parameter(v), key))
    for m in session.messages:
        if m["role"] == "system" and m["content"] == session.system:
            continue  # carried by SYSTEM
        commands.append(Command(Instruction.MESSAGE, m["content"], m["role"]))
    return Modelfile(tuple(commands))


class Repl:
    """One interactive session; ``run()`` returns the exit code."""

    def __init__(self, backend: Backend, session: Session, out: TextIO, err: TextIO,
                 read_line: Callable[[str], str] = input) -> None:
        self.backend = backend
        self.session = session
        self.out = out
        self.err = err
        self.read_line = read_line
        self.buffer = ""
        self.multiline = Multiline.NONE

    def say(self, text: str = "", stream: TextIO | None = None) -> None:
        target = stream or self.out
        target.write(text + "\n")
        target.flush()

    def run(self) -> int:
        _enable_line_editing()
        while True:
            prompt = ALT_PROMPT if self.multiline is not Multiline.NONE else PROMPT
            try:
                line = self.read_line(prompt)
            except EOFError:
                self.say()
                return 0
            except KeyboardInterrupt:
                if not self.buffer and not _typed_so_far():
                    self.say("\nUse Ctrl + d or /bye to exit.")
                else:
                    self.say()
                self.buffer, self.multiline = "", Multiline.NONE
                continue
            try:
                if not self.handle(line):
                    return 0
            except KeyboardInterrupt:  # between reading and streaming: drop the line
                self.say()
                self.buffer, self.multiline = "", Multiline.NONE

    # -- one line ----------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Process one input line; False means leave the REPL."""
        if self.multiline is not Multiline.NONE:
            before, closed = _cut_suffix(line, MULTILINE_QUOTE)
            self.buffer += before
            if not closed:
                self.buffer += "\n"
                return True
            if self.multiline is Multiline.SYSTEM:
                self.session.set_system(self.buffer)
                self.say("Set system message.")
                self.buffer = ""
            self.multiline = Multiline.NONE
        elif line.startswith(MULTILINE_QUOTE):
            rest, closed = _cut_suffix(line[len(MULTILINE_QUOTE):], MULTILINE_QUOTE)
            self.buffer += rest
            if not closed:
                self.buffer += "\n"
                self.multiline = Multiline.PROMPT
                return True
        elif line.startswith("/"):
            return self.command(line)
        else:
            self.buffer += line
        if self.buffer and self.multiline is Multiline.NONE:
            text, self.buffer = self.buffer, ""
            self.send(text)
        return True

    def command(self, line: str) -> bool:
        args = line.split()
        name = args[0]
        if name in ("/bye", "/exit"):
            return False
        handlers = {
            "/set": self.cmd_set, "/show": self.cmd_show, "/load": self.cmd_load,
            "/save": self.cmd_save, "/clear": self.cmd_clear, "/?": self.cmd_help, "/help": self.cmd_help,
        }
        handler = handlers.get(name)
        if handler is None:
            self.say(f"Unknown command '{name}'. Type /? for help")
        else:
            handler(args[1:], line)
        return True

    # -- chat ----------------------------------------------------------------------

    def wrap_width(self) -> int | None:
        if not self.session.wordwrap or not self.out.isatty():
            return None
        return shutil.get_terminal_size().columns

    def send(self, text: str) -> None:
        session = self.session
        session.messages.append({"role": "user", "content": text})
        try:
            reply = stream_reply(self.backend.chat(session.chat_request()), self.out, self.wrap_width(), self.err,
                                 session.hide_thinking)
        except KettleError as e:
            session.messages.pop()
            self.say(f"Error: {e}", self.err)
            return
        if reply.cancelled:
            session.messages.pop()
            self.say()
            return
        answer = {"role": "assistant", "content": reply.text}
        if reply.thinking:
            answer["thinking"] = reply.thinking
        session.messages.append(answer)
        self.say("\n")
        if session.verbose:
            print_summary(reply.final, self.err)

    # -- commands --------------------------------------------------------------------

    def cmd_set(self, args: list[str], line: str) -> None:
        if not args:
            self.say(USAGE_SET, self.err)
            return
        what, session = args[0], self.session
        simple = {
            "verbose": ("verbose", True, "Set 'verbose' mode."),
            "quiet": ("verbose", False, "Set 'quiet' mode."),
            "wordwrap": ("wordwrap", True, "Set 'wordwrap' mode."),
            "nowordwrap": ("wordwrap", False, "Set 'nowordwrap' mode."),
            "noformat": ("format", "", "Disabled format."),
        }
        if what in simple:
            attr, value, message = simple[what]
            setattr(session, attr, value)
            self.say(message)
        elif what in ("history", "nohistory"):
            pass  # history lives in memory only; nothing to switch
        elif what == "format":
            if len(args) < 2 or args[1] != "json":
                self.say("Invalid or missing format. For 'json' mode use '/set format json'")
            else:
                session.format = "json"
                self.say("Set format to 'json' mode.")
        elif what == "think":
            self.set_think(args[1:])
        elif what == "nothink":
            session.think = False
            self.say("Set 'nothink' mode.")
        elif what == "parameter":
            self.set_parameter(args[1:])
        elif what == "system":
            self.set_system(line)
        else:
            self.say(f"Unknown command '/set {what}'. Type /? for help")

    def set_think(self, args: list[str]) -> None:
        """``/set think`` (on) or ``/set think LEVEL`` (high, medium, low, max)."""
        from kettle.thinking import LEVELS

        if args and args[0] not in LEVELS:
            self.say(f"Invalid think level {args[0]!r}: use " + ", ".join(LEVELS))
            return
        self.session.think = args[0] if args else True
        self.say(f"Set 'think' mode to '{args[0]}'." if args else "Set 'think' mode.")

    def set_parameter(self, args: list[str]) -> None:
        if len(args) < 2:
            self.say(USAGE_PARAMETERS, self.err)
            return
        name, values = args[0], args[1:]
        try:
            self.session.options[name] = parse_parameter(name, values)
        except InvalidParameter as e:
            self.say(f"Couldn't set parameter: {str(e)!r}")
            return
        self.say(f"Set parameter '{name}' to '{', '.join(values)}'")

    def set_system(self, line: str) -> None:
        text = line.split(None, 2)[2] if len(line.split(None, 2)) > 2 else ""
        if not text:
            self.say(USAGE_SET, self.err)
            return
        if text.startswith(MULTILINE_QUOTE):
            text, closed = _cut_suffix(text[len(MULTILINE_QUOTE):], MULTILINE_QUOTE)
            if not closed:
                self.buffer = text + "\n"
                self.multiline = Multiline.SYSTEM
                return
        self.session.set_system(text)
        self.say("Set system message.")

    def cmd_show(self, args: list[str], line: str) -> None:
        if not args:
            self.say(USAGE_SHOW, self.err)
            return
        what = args[0]
        if what not in ("info", "license", "modelfile", "parameters", "system", "template"):
            self.say(f"Unknown command '/show {what}'. Type /? for help")
            return
        try:
            resp = self.backend.show(self.session.model)
        except KettleError as e:
            self.say(f"error: couldn't get model: {e}")
            return
        if what == "info":
            self.err.write(show_info(resp))
        elif what == "license":
            self.say(resp.get("license") or "No license was specified for this model.")
        elif what == "modelfile":
            self.say(resp.get("modelfile", ""))
        elif what == "parameters":
            self.show_parameters(resp.get("parameters") or "")
        elif what == "system":
            system = self.session.system or resp.get("system") or ""
            self.say(system + "\n" if system else "No system message was specified for this model.")
        else:
            self.say(resp.get("template") or "No prompt template was specified for this model.")

    def show_parameters(self, model_params: str) -> None:
        self.say("Model defined parameters:")
        if not model_params:
            self.say("  No additional parameters were specified for this model.")
        for text in model_params.splitlines():
            self.say(f"  {text}")
        self.say()
        if self.session.options:
            self.say("User defined parameters:")
            for key, value in self.session.options.items():
                shown = " ".join(go_value(v) for v in value) if isinstance(value, list) else go_value(value)
                self.say(f"  {key:<{PARAM_NAME_WIDTH}} {shown}")
            self.say()

    def cmd_load(self, args: list[str], line: str) -> None:
        if len(args) != 1:
            self.say("Usage:\n  /load <modelname>")
            return
        name = args[0]
        self.say(f"Loading model '{name}'")
        try:
            if not self.backend.exists(name):
                self.say(f"Couldn't find model '{name}'")
                return
            self.backend.load(name, self.session.options)
        except KettleError as e:
            self.say(f"error: {e}")
            return
        self.session.model = name
        self.session.system = ""
        self.session.messages = []

    def cmd_save(self, args: list[str], line: str) -> None:
        if len(args) != 1:
            self.say("Usage:\n  /save <modelname>")
            return
        from kettle.store import parse_name

        name = args[0]
        if not parse_name(name).is_valid():
            self.say(f"error: The model name '{name}' is invalid")
            return
        try:
            self.backend.create(name, session_modelfile(self.session), Path.cwd(), lambda event: None)
        except KettleError as e:
            self.say(f"error: {e}")
            return
        self.say(f"Created new model '{name}'")

    def cmd_clear(self, args: list[str], line: str) -> None:
        self.session.clear()
        self.say("Cleared session context")

    def cmd_help(self, args: list[str], line: str) -> None:
        topic = args[0] if args else ""
        text = {
            "set": USAGE_SET, "/set": USAGE_SET, "show": USAGE_SHOW, "/show": USAGE_SHOW,
            "shortcut": USAGE_SHORTCUTS, "shortcuts": USAGE_SHORTCUTS,
        }.get(topic, USAGE)
        self.say(text, self.err)


def _cut_suffix(text: str, suffix: str) -> tuple[str, bool]:
    return (text[: -len(suffix)], True) if text.endswith(suffix) else (text, False)


def _enable_line_editing() -> None:
    """Line editing and history for ``input()`` (GNU readline or libedit), where present."""
    try:
        import readline  # noqa: F401  (importing it is what hooks input())
    except ImportError:
        pass


def _typed_so_far() -> str:
    """What was on the input line when Ctrl-C came ("" without readline)."""
    try:
        import readline
    except ImportError:
        return ""
    return readline.get_line_buffer()

"""The REPL's commands, driven line by line in-process (no generation, no terminal)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kettle.cli.local_backend import LocalBackend
from kettle.cli.repl import Repl, Session, parse_parameter, session_modelfile
from kettle.errors import InvalidParameter
from kettle.modelfile import interpret, parse


@pytest.fixture
def backend(shared_store: Path, monkeypatch: pytest.MonkeyPatch) -> LocalBackend:
    monkeypatch.setenv("KETTLE_MODELS", str(shared_store))
    b = LocalBackend("http://127.0.0.1:1")
    yield b
    b.close()


def run_lines(backend: LocalBackend, lines: list[str], session: Session | None = None) -> tuple[Repl, str, str]:
    """Feed ``lines`` to a REPL, then Ctrl-D; returns (repl, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    feed = iter(lines)

    def read_line(prompt: str) -> str:
        out.write(prompt)
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    repl = Repl(backend, session or Session("smollm2"), out, err, read_line)
    assert repl.run() == 0
    return repl, out.getvalue(), err.getvalue()


def test_set_parameter_typed_and_rejected(backend: LocalBackend) -> None:
    repl, out, _ = run_lines(backend, [
        "/set parameter num_predict 16", "/set parameter temperature 0", "/set parameter stop <a> <b>",
        "/set parameter temperature hot", "/set parameter nosuch 1", "/set parameter top_k",
    ])
    assert repl.session.options == {"num_predict": 16, "temperature": 0.0, "stop": ["<a>", "<b>"]}
    assert "Set parameter 'num_predict' to '16'" in out and "Set parameter 'stop' to '<a>, <b>'" in out
    assert out.count("Couldn't set parameter:") == 2 and "expected a number" in out
    assert "Available Parameters:" in repl.err.getvalue()  # /set parameter with no value


def test_show_parameters_lists_model_and_user_values(backend: LocalBackend) -> None:
    _, out, _ = run_lines(backend, ["/set parameter num_predict 16", "/show parameters"])
    assert "Model defined parameters:\n  stop" in out
    assert '"<|im_end|>"' in out
    assert f"User defined parameters:\n  {'num_predict':<30} 16\n" in out


def test_set_system_one_line_and_multiline(backend: LocalBackend) -> None:
    repl, out, _ = run_lines(backend, ["/set system You are Luigi.", "/show system"])
    assert repl.session.system == "You are Luigi."
    assert repl.session.messages == [{"role": "system", "content": "You are Luigi."}]
    assert out.count("Set system message.") == 1 and "You are Luigi.\n" in out
    repl, out, _ = run_lines(backend, ['/set system """You are', "a plumber.", 'Really."""', "/clear"])
    assert repl.session.system == "You are\na plumber.\nReally."
    assert "... " in out  # the continuation prompt
    assert repl.session.messages == [{"role": "system", "content": "You are\na plumber.\nReally."}]
    assert "Cleared session context" in out


def test_show_variants_and_unknown_commands(backend: LocalBackend) -> None:
    _, out, err = run_lines(backend, [
        "/show info", "/show license", "/show template", "/show system", "/show modelfile", "/show nope",
        "/nope", "/set nope", "/?", "/? shortcuts", "/set", "/show",
    ])
    assert "  Model\n    architecture        llama" in err  # ollama writes /show info to stderr
    assert "Apache License 2.0" in out and "<|im_start|>" in out
    assert "No system message was specified for this model." in out
    assert "FROM " in out and "# FROM smollm2:latest" in out
    assert "Unknown command '/show nope'. Type /? for help" in out
    assert "Unknown command '/nope'. Type /? for help" in out and "Unknown command '/set nope'." in out
    assert "/bye            Exit" in err and "Ctrl + d            Exit kettle" in err
    assert "/set parameter ...     Set a parameter" in err and "/show info         Show details" in err


def test_format_verbose_wordwrap_switches(backend: LocalBackend) -> None:
    repl, out, _ = run_lines(backend, ["/set format json", "/set verbose", "/set nowordwrap", "/set format yaml"])
    s = repl.session
    assert (s.format, s.verbose, s.wordwrap) == ("json", True, False)
    assert "Set format to 'json' mode." in out and "Invalid or missing format." in out
    assert s.chat_request()["format"] == "json"
    repl, _, _ = run_lines(backend, ["/set noformat", "/set quiet"], Session("smollm2", format="json", verbose=True))
    assert (repl.session.format, repl.session.verbose) == ("", False)


def test_save_then_load_the_session(backend: LocalBackend) -> None:
    session = Session("smollm2", messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    repl, out, _ = run_lines(backend, [
        "/set system You are Toad.", "/set parameter temperature 0.5", "/save toad-session",
        "/save bad name", "/save ../x", "/load toad-session", "/load no-such-model",
    ], session)
    assert "Created new model 'toad-session'" in out
    assert "error: The model name '../x' is invalid" in out and "Usage:\n  /save <modelname>" in out
    assert "Loading model 'toad-session'" in out and "Couldn't find model 'no-such-model'" in out
    assert repl.session.model == "toad-session" and repl.session.messages == []
    shown = backend.show("toad-session")
    assert shown["system"] == "You are Toad."
    assert shown["messages"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert "temperature                    0.5" in shown["parameters"]
    backend.delete("toad-session")


def test_multiline_message_is_gathered_before_sending(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(Repl, "send", lambda self, text: sent.append(text))
    run_lines(backend, ['"""first line', "second line", 'third"""', '"""one line"""', "plain"])
    assert sent == ["first line\nsecond line\nthird", "one line", "plain"]


def test_parse_parameter_and_session_modelfile() -> None:
    assert parse_parameter("stop", ["a", "b"]) == ["a", "b"]
    with pytest.raises(InvalidParameter):
        parse_parameter("temperature", ["0.1", "0.2"])
    session = Session("smollm2", system="Be brief.", options={"temperature": 0.0, "stop": ["x"]})
    session.set_system("Be brief.")
    session.messages += [{"role": "user", "content": 'Say """hi"""'}, {"role": "assistant", "content": "hi"}]
    spec = interpret(parse(str(session_modelfile(session))))
    assert spec.base.value == "smollm2" and spec.system == "Be brief."
    assert spec.parameters == {"temperature": 0.0, "stop": ["x"]}
    assert [m["role"] for m in spec.messages] == ["user", "assistant"]  # the system turn is SYSTEM


def test_set_think_and_nothink(backend: LocalBackend) -> None:
    repl, out, _ = run_lines(backend, ["/set think", "/set think high", "/set think hardest"])
    assert repl.session.think == "high" and repl.session.chat_request()["think"] == "high"
    assert "Set 'think' mode." in out and "Set 'think' mode to 'high'." in out and "Invalid think level" in out
    repl, out, _ = run_lines(backend, ["/set nothink"])
    assert repl.session.think is False and repl.session.chat_request()["think"] is False
    assert "think" not in Session("smollm2").chat_request()  # unset: the model's default

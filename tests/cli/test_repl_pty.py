"""The interactive REPL through a real pseudo-terminal (pexpect), on the bundled smollm2."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pexpect
import pytest

from tests.cli.conftest import MARIO_MODELFILE, cli_env, make_runner

pytestmark = pytest.mark.slow

PROMPT = ">>> "
ANSWER_TIMEOUT_S = 90


def spawn(store: Path, cwd: Path, *args: str) -> pexpect.spawn:
    env = cli_env(store)
    env["TERM"] = "dumb"
    child = pexpect.spawn(sys.executable, ["-m", "kettle", "run", *args], env=env, cwd=str(cwd),
                          encoding="utf-8", timeout=ANSWER_TIMEOUT_S, dimensions=(24, 200))
    child.expect_exact(PROMPT)
    return child


def command(child: pexpect.spawn, line: str) -> str:
    """Send a line; return what was printed before the next prompt (minus the echo)."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    return child.before.replace("\r\n", "\n").split("\n", 1)[-1]


def test_conversation_commands_and_bye(shared_store: Path, tmp_path: Path) -> None:
    child = spawn(shared_store, tmp_path, "smollm2")
    assert command(child, "/set parameter num_predict 16") == "Set parameter 'num_predict' to '16'\n"
    command(child, "/set parameter temperature 0")
    answer = command(child, "What is the capital of France?")
    assert answer.strip() and answer.endswith("\n\n")  # a streamed answer, then a blank line
    child.sendline('"""')
    child.expect_exact("... ")
    child.sendline("Answer in one word:")
    child.expect_exact("... ")
    child.sendline('what color is the sky?"""')
    child.expect_exact(PROMPT)
    assert child.before.strip()
    shown = command(child, "/show parameters")
    assert "Model defined parameters:" in shown and re.search(r"num_predict\s+16", shown)
    assert command(child, "/set system You are a pirate.") == "Set system message.\n"
    assert "You are a pirate." in command(child, "/show system")
    assert command(child, "/save pirate-session") == "Created new model 'pirate-session'\n"
    assert command(child, "/clear") == "Cleared session context\n"
    assert "Loading model 'pirate-session'" in command(child, "/load pirate-session")
    assert "You are a pirate." in command(child, "/show system")  # the saved SYSTEM
    command(child, "/set parameter num_ctx 256")  # a load-time option: the model reloads
    assert command(child, "Who are you?").strip()
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    make_runner(shared_store, tmp_path)("rm", "pirate-session")


def test_ctrl_c_stops_an_answer_and_ctrl_d_exits(shared_store: Path, tmp_path: Path) -> None:
    child = spawn(shared_store, tmp_path, "greedy")
    command(child, "/set parameter num_predict 2000")
    child.sendline("Write a very long story about a dragon and a castle.")
    child.expect_exact("castle.\r\n")  # the echo of the line
    child.expect(r"\w+ \w+ \w+")  # the answer has begun streaming
    child.sendintr()
    child.expect_exact(PROMPT, timeout=15)  # back at the prompt, long before 2000 tokens
    child.sendintr()  # on an empty line: the hint
    child.expect_exact("Use Ctrl + d or /bye to exit.")
    child.expect_exact(PROMPT)
    assert command(child, "/set parameter num_predict 8").startswith("Set parameter")
    assert command(child, "Hi!").strip()  # the session still answers after a cancel
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_the_seed_mario_example_answers_in_character(shared_store: Path, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(MARIO_MODELFILE)
    kettle = make_runner(shared_store, tmp_path)
    created = kettle("create", "mario", "-f", "./Modelfile")
    assert created.returncode == 0, created.stderr
    child = spawn(shared_store, tmp_path, "mario")
    command(child, "/set parameter num_predict 24")
    command(child, "/set parameter temperature 0")  # greedy, so the check below is stable
    answer = command(child, "Introduce yourself.")
    assert "Mario" in answer, answer
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    kettle("rm", "mario")

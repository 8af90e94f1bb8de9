"""The CLI as a client of a real ``kettle serve`` (a subprocess on a free port)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from kettle.cli.backend import probe

from tests.cli.conftest import RUN_TIMEOUT_S, cli_env, unused_port
from tests.registry.fake_registry import FakeRegistry, Running

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 60
POLL_S = 0.1


@pytest.fixture(scope="module")
def server_env(shared_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of CLI processes that find the server (its KETTLE_HOST)."""
    env = cli_env(shared_store)
    env["KETTLE_HOST"] = f"127.0.0.1:{unused_port()}"
    log = tmp_path_factory.mktemp("server") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kettle", "serve"], env=env, stdout=out, stderr=out)
    url = "http://" + env["KETTLE_HOST"]
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not probe(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"kettle serve did not start:\n{log.read_text()}")
        time.sleep(POLL_S)
    yield env
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def remote(env: dict[str, str], cwd: Path, *args: str, input: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kettle", *args], input=input, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=RUN_TIMEOUT_S)


def test_models_commands_over_http(server_env: dict[str, str], tmp_path: Path, smollm2_path: Path) -> None:
    listed = remote(server_env, tmp_path, "list")
    assert listed.returncode == 0 and re.search(r"^smollm2:latest\s+[0-9a-f]{12}\s+98 MB", listed.stdout, re.M)
    assert '"<|im_end|>"' in remote(server_env, tmp_path, "show", "smollm2", "--parameters").stdout
    # FROM a file on this machine: uploaded as a blob, then /api/create with "files"
    (tmp_path / "Modelfile").write_text(f"FROM {smollm2_path}\nPARAMETER temperature 0\nSYSTEM Be brief.\n")
    created = remote(server_env, tmp_path, "create", "uploaded", "-f", "Modelfile")
    assert created.returncode == 0 and created.stderr.splitlines()[-1] == "success", created.stderr
    assert remote(server_env, tmp_path, "show", "uploaded", "--system").stdout == "Be brief.\n"
    assert remote(server_env, tmp_path, "cp", "uploaded", "uploaded-2").returncode == 0
    removed = remote(server_env, tmp_path, "rm", "uploaded", "uploaded-2")
    assert removed.stdout == "deleted 'uploaded'\ndeleted 'uploaded-2'\n"
    missing = remote(server_env, tmp_path, "rm", "uploaded")
    assert missing.returncode == 1 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    running = Running(FakeRegistry())  # the server pulls from a registry on 127.0.0.1, never the network
    try:
        name = f"{running.registry.host}/library/llama3"
        pulled = remote(server_env, tmp_path, "pull", name, "--insecure")
        last = pulled.stderr.splitlines()[-1]
        assert pulled.returncode == 1 and last.startswith("Error: ") and "not found" in last, pulled.stderr
    finally:
        running.stop()


def test_a_gguf_path_runs_while_a_server_is_up(server_env: dict[str, str], tmp_path: Path, smollm2_path: Path,
                                               kettle) -> None:
    gguf = tmp_path / "smollm2.gguf"
    gguf.symlink_to(smollm2_path)
    question = "What is the capital of France?"
    # a bare file has no Modelfile parameters (sampled, no num_predict): a 64-token window caps
    # the answer at ten windows (ollama's rule), so a rambling one cannot run for minutes
    answer = remote(dict(server_env, KETTLE_CONTEXT_LENGTH="64"), tmp_path, "run", str(gguf), question, "--verbose")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() and "eval rate:" in answer.stderr
    assert "invalid model name" not in answer.stderr
    assert str(gguf) not in remote(server_env, tmp_path, "ps").stdout  # this process ran it, not the server


def test_run_ps_and_stop_over_http(server_env: dict[str, str], tmp_path: Path, kettle) -> None:
    question = "What is the capital of France?"
    answer = remote(server_env, tmp_path, "run", "greedy", question, "--verbose")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() and "eval rate:" in answer.stderr
    assert answer.stdout == kettle("run", "greedy", question).stdout  # the server and in-process agree
    ps = remote(server_env, tmp_path, "ps").stdout.splitlines()
    assert re.fullmatch(r"NAME\s+ID\s+SIZE\s+PROCESSOR\s+CONTEXT\s+UNTIL", ps[0])
    assert re.fullmatch(r"greedy:latest\s+[0-9a-f]{12}\s+98 MB\s+100% CPU\s+512\s+\d+ minutes from now", ps[1])
    assert remote(server_env, tmp_path, "stop", "greedy").returncode == 0
    assert "minutes from now" not in remote(server_env, tmp_path, "ps").stdout


def test_repl_over_http_and_ctrl_c(server_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(server_env, TERM="dumb")
    child = pexpect.spawn(sys.executable, ["-m", "kettle", "run", "greedy"], env=env, cwd=str(tmp_path),
                          encoding="utf-8", timeout=RUN_TIMEOUT_S, dimensions=(24, 200))
    child.expect_exact(">>> ")
    child.sendline("/set parameter num_predict 2000")
    child.expect_exact(">>> ")
    child.sendline("Write a very long story about a dragon.")
    child.expect_exact("dragon.\r\n")
    child.expect(r"\w+ \w+ \w+")
    child.sendintr()  # closes the HTTP stream; the server cancels the request
    child.expect_exact(">>> ", timeout=15)
    child.sendline("/set parameter num_predict 8")
    child.expect_exact(">>> ")
    child.sendline("Hi!")
    child.expect_exact(">>> ")
    assert child.before.split("\n", 1)[-1].strip()
    child.sendline("/bye")
    child.expect(pexpect.EOF)


def test_format_json_over_http(server_env: dict[str, str], tmp_path: Path) -> None:
    result = remote(server_env, tmp_path, "run", "greedy", "Describe a cat as JSON with keys name and color.",
                    "--format", "json")
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)

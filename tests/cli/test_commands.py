"""``kettle`` commands that need no generation, as subprocesses without a server."""

from __future__ import annotations

import re
from pathlib import Path

from kettle import config
from kettle.modelfile import interpret, parse

from tests.cli.conftest import MARIO_MODELFILE, Kettle
from tests.registry.fake_registry import FakeRegistry, Running

TRACEBACK = "Traceback (most recent call last)"


def assert_error(result, *fragments: str) -> None:
    """Exit 1, a last line ``Error: ...`` on stderr naming each fragment, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert TRACEBACK not in result.stderr
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, result.stderr


def test_pull_into_an_empty_store_then_list(fresh_kettle: Kettle) -> None:
    empty = fresh_kettle("list")
    assert empty.returncode == 0 and empty.stdout == "NAME    ID    SIZE    MODIFIED\n"
    pulled = fresh_kettle("pull", "smollm2:135m")
    assert pulled.returncode == 0, pulled.stderr
    statuses = pulled.stderr.splitlines()
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "pulling b179c9523d0e... 100% 98 MB" in statuses and "verifying sha256 digest" in statuses
    listed = fresh_kettle("ls").stdout.splitlines()
    assert re.fullmatch(r"NAME\s+ID\s+SIZE\s+MODIFIED", listed[0])
    assert re.fullmatch(r"smollm2:135m\s+[0-9a-f]{12}\s+98 MB\s+(Less than a second|\d+ seconds?) ago", listed[1])


def test_pull_of_an_unknown_name_says_the_registry_has_none(fresh_kettle: Kettle) -> None:
    running = Running(FakeRegistry())  # a registry on 127.0.0.1 (no network in tests)
    try:
        name = f"{running.registry.host}/library/llama3"
        assert_error(fresh_kettle("pull", name, "--insecure"), f"'{name}:latest' not found", "has no such model")
        assert_error(fresh_kettle("pull", f"http://{name}"), "--insecure")
    finally:
        running.stop()
    assert_error(fresh_kettle("pull", "../x"), "invalid model name")


def test_show_sections_and_single_fields(kettle: Kettle) -> None:
    info = kettle("show", "smollm2")
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith("  Model\n    architecture        llama\n")
    assert "quantization        Q4_1" in info.stdout and "  License\n" in info.stdout
    params = kettle("show", "smollm2", "--parameters").stdout
    assert params.splitlines() == ["stop" + " " * 27 + '"<|im_start|>"', "stop" + " " * 27 + '"<|im_end|>"']
    assert "Apache License 2.0" in kettle("show", "smollm2", "--license").stdout
    assert "<|im_start|>" in kettle("show", "smollm2", "--template").stdout  # the GGUF's chat template
    assert_error(kettle("show", "smollm2", "--system", "--license"), "only one of")


def test_create_mario_then_show_modelfile_parses_back(kettle: Kettle, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(MARIO_MODELFILE)
    created = kettle("create", "mario-cmd", "-f", "./Modelfile")
    assert created.returncode == 0, created.stderr
    assert created.stderr.splitlines()[-2:] == ["writing manifest", "success"]
    assert kettle("show", "mario-cmd", "--system").stdout == (
        "You are Mario from super mario bros, acting as an assistant.\n")
    shown = kettle("show", "mario-cmd", "--modelfile")
    assert shown.returncode == 0
    spec = interpret(parse(shown.stdout))
    assert spec.system == "You are Mario from super mario bros, acting as an assistant."
    assert spec.parameters == {"temperature": 1.0, "num_ctx": 4096, "stop": ["<|im_start|>", "<|im_end|>"]}
    assert Path(spec.base.value).is_file()  # FROM names the GGUF blob, as ollama prints it
    # and it builds the same model again
    (tmp_path / "Again").write_text(shown.stdout)
    assert kettle("create", "mario-again", "-f", "Again").returncode == 0
    assert kettle("show", "mario-again", "--parameters").stdout == kettle("show", "mario-cmd", "--parameters").stdout
    assert kettle("rm", "mario-cmd", "mario-again").stdout == "deleted 'mario-cmd'\ndeleted 'mario-again'\n"


def test_cp_and_rm(kettle: Kettle) -> None:
    copied = kettle("cp", "smollm2", "copy-of-smollm2")
    assert copied.returncode == 0 and copied.stdout == "copied 'smollm2' to 'copy-of-smollm2'\n"
    names = [line.split()[0] for line in kettle("list").stdout.splitlines()[1:]]
    assert "copy-of-smollm2:latest" in names and "smollm2:latest" in names
    assert kettle("list", "copy-").stdout.count("\n") == 2  # header + the one match
    removed = kettle("rm", "copy-of-smollm2")
    assert removed.returncode == 0 and removed.stdout == "deleted 'copy-of-smollm2'\n"
    assert "copy-of-smollm2" not in kettle("list").stdout
    assert "smollm2:latest" in kettle("list").stdout  # the shared blob stayed for smollm2
    assert_error(kettle("rm", "copy-of-smollm2"), "not found")
    assert_error(kettle("cp", "no-such-model", "x"), "not found")


def test_create_errors_carry_the_line_and_write_nothing(kettle: Kettle, tmp_path: Path) -> None:
    (tmp_path / "Bad").write_text("FROM smollm2\nPARAMETER temperature hot\n")
    assert_error(kettle("create", "bad", "-f", "Bad"), "Bad: line 2", "temperature")
    (tmp_path / "Missing").write_text("FROM ./nowhere.gguf\n")
    assert_error(kettle("create", "bad", "-f", "Missing"), "line 1")
    assert_error(kettle("create", "bad", "-f", "no-such-file"), "cannot read no-such-file")
    assert_error(kettle("create", "bad name!", "-f", "Bad"))
    assert "bad" not in kettle("list").stdout


def test_unknown_model_is_a_clear_error(kettle: Kettle) -> None:
    running = Running(FakeRegistry())  # `run` pulls a missing model first: from this registry
    try:
        host = running.registry.host
        result = kettle("run", f"{host}/library/no-such-model", "hello there", "--insecure")
        assert_error(result, f"model '{host}/library/no-such-model:latest' not found", "has no such model")
        single = kettle("run", f"{host}/library/hello", "--insecure")  # the hint says how to send it as a prompt
        assert_error(single, "not found", f"kettle run smollm2 {host}/library/hello")
    finally:
        running.stop()
    assert_error(kettle("show", "no-such-model"), "not found")


def test_ps_and_stop_without_a_server(kettle: Kettle) -> None:
    assert_error(kettle("ps"), "no kettle server is running at http://127.0.0.1:")
    assert_error(kettle("stop", "smollm2"), "no kettle server is running", "'smollm2' is not loaded")


def test_version_help_and_usage_errors(kettle: Kettle) -> None:
    assert kettle("--version").stdout == "kettle version is 0.1.0\n"
    assert kettle("-v").returncode == 0
    serve_help = kettle("serve", "--help").stdout
    for name in config.SETTINGS:
        assert name in serve_help
    run_help = kettle("run", "--help").stdout
    assert "default model (smollm2)" in run_help and "--format" in run_help and "--nowordwrap" in run_help
    top = kettle()
    assert top.returncode == 0 and "create" in top.stdout and "list (ls)" in top.stdout
    bad = kettle("frobnicate")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and TRACEBACK not in bad.stderr
    assert_error(kettle("quantize", "missing.gguf", "out.gguf", "Q4_0"), "not a regular file")
    assert_error(kettle("run", "smollm2", "hi", "--format", "yaml"), "only 'json'")

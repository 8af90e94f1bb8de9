"""``kettle run``: which word is the model, and one-shot answers on the bundled smollm2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kettle.cli.commands import split_model_and_prompt

from tests.cli.conftest import Kettle


@pytest.mark.parametrize(("words", "model", "prompt"), [
    ([], "smollm2", []),
    (["gemma3:270m"], "gemma3:270m", []),
    (["smollm2", "Why", "is", "the", "sky", "blue?"], "smollm2", ["Why", "is", "the", "sky", "blue?"]),
    (["Why is the sky blue?"], "smollm2", ["Why is the sky blue?"]),
    (["hello"], "hello", []),  # one word is a model name; `kettle run smollm2 hello` sends it
    (["me/mario:v1", "hi"], "me/mario:v1", ["hi"]),
    (["2+2?"], "smollm2", ["2+2?"]),
    (["what's up", "doc"], "smollm2", ["what's up", "doc"]),
    (["../x"], "smollm2", ["../x"]),  # not a valid name, so not a model
])
def test_split_model_and_prompt(words: list[str], model: str, prompt: list[str]) -> None:
    assert split_model_and_prompt(words) == (model, prompt)


def test_a_gguf_path_is_a_model(smollm2_path: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "smollm2.gguf"
    gguf.symlink_to(smollm2_path)  # the fixture is a store blob, named by its digest
    assert split_model_and_prompt([str(gguf), "hi"]) == (str(gguf), ["hi"])
    assert split_model_and_prompt(["missing.gguf", "hi"]) == ("missing.gguf", ["hi"])  # a valid name


QUESTION = "What is the capital of France?"


@pytest.mark.slow
def test_one_shot_and_piped_prompts_give_the_same_greedy_answer(kettle: Kettle) -> None:
    one_shot = kettle("run", "greedy", QUESTION)
    assert one_shot.returncode == 0, one_shot.stderr
    assert one_shot.stdout.endswith("\n\n") and one_shot.stdout.strip()
    piped = kettle("run", "greedy", input=QUESTION)  # stdin is the whole prompt
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == one_shot.stdout  # temperature 0: the same tokens both ways


@pytest.mark.slow
def test_a_sentence_alone_is_a_prompt_for_the_default_model(fresh_kettle: Kettle, tmp_path: Path,
                                                             smollm2_path: Path) -> None:
    # This store's smollm2 is a short-answering one, so the default model's answer is bounded.
    (tmp_path / "Modelfile").write_text(f"FROM {smollm2_path}\nPARAMETER temperature 0\nPARAMETER num_predict 8\n")
    assert fresh_kettle("create", "smollm2", "-f", "Modelfile").returncode == 0
    answer = fresh_kettle("run", QUESTION, "--verbose")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() and re.search(r"^eval count:\s+[1-8] token", answer.stderr, re.M)


VERBOSE_LINES = [
    r"total duration:       [0-9.]+(ns|µs|ms|s)|total duration:       (\d+m)?[0-9.]+s",
    r"load duration:        .+",
    r"prompt eval count:    \d+ token\(s\)",
    r"prompt eval duration: .+",
    r"prompt eval rate:     \d+\.\d\d tokens/s",
    r"eval count:           \d+ token\(s\)",
    r"eval duration:        .+",
    r"eval rate:            \d+\.\d\d tokens/s",
]


@pytest.mark.slow
def test_verbose_prints_ollamas_timing_lines(kettle: Kettle) -> None:
    result = kettle("run", "greedy", "--verbose", "Say hi.")  # flags between the model and the prompt
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(VERBOSE_LINES), result.stderr
    for line, pattern in zip(lines, VERBOSE_LINES):
        assert re.fullmatch(pattern, line), line
    eval_count = int(re.search(r"^eval count:\s+(\d+)", result.stderr, re.M).group(1))
    assert 1 <= eval_count <= 24  # num_predict 24 in greedy (an end-of-turn may come first)


@pytest.mark.slow
def test_format_json_output_parses(kettle: Kettle) -> None:
    result = kettle("run", "greedy", "--format", "json", "--nowordwrap",
                    "Describe a cat as JSON with keys name and color.")
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)


@pytest.mark.parametrize("argv", [
    ["run", "smollm2", "--verbose", "hi", "there"],
    ["run", "smollm2", "hi", "--verbose", "there"],
    ["run", "--verbose", "smollm2", "hi", "there"],
    ["run", "smollm2", "hi", "there", "--verbose"],
])
def test_flags_anywhere_on_run(argv: list[str]) -> None:
    from kettle.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    assert args.words == ["smollm2", "hi", "there"] and args.verbose


def test_format_and_nowordwrap_between_words() -> None:
    from kettle.cli.parser import build_parser

    args = build_parser().parse_args(["run", "smollm2", "--format", "json", "a", "--nowordwrap", "b"])
    assert (args.words, args.format, args.nowordwrap) == (["smollm2", "a", "b"], "json", True)

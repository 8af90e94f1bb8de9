"""``kettle run --think[=VALUE]`` / ``--hidethinking`` on a thinking model: SmolLM2 with a TEMPLATE
that opens ``<think>`` in the prompt (see tests/server/test_thinking.py), in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from kettle.cli.commands import UsageError, think_value
from kettle.cli.parser import build_parser
from kettle.cli.reply import THINKING_END, THINKING_START
from tests.cli.conftest import Kettle
from tests.server.test_thinking import QUESTION, TEMPLATE


def test_think_takes_a_value_only_after_equals() -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "qwen3", "--think", "why?"])
    assert args.think == "true" and args.words == ["qwen3", "why?"]
    args = parser.parse_args(["run", "qwen3", "--think=high", "--hidethinking", "why?"])
    assert args.think == "high" and args.hidethinking and args.words == ["qwen3", "why?"]
    assert parser.parse_args(["run", "qwen3", "hi"]).think is None


@pytest.mark.parametrize(("flag", "value"), [(None, None), ("true", True), ("False", False), ("low", "low"),
                                             ("max", "max")])
def test_think_values(flag: str | None, value: object) -> None:
    assert think_value(flag, False) == value


def test_a_bad_think_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--think"):
        think_value("hardest", False)


@pytest.fixture
def thinker(fresh_kettle: Kettle, tmp_path: Path, smollm2_path: Path) -> Kettle:
    (tmp_path / "Modelfile").write_text(
        f'FROM {smollm2_path}\nTEMPLATE """{TEMPLATE}"""\nPARAMETER temperature 0\nPARAMETER num_predict 8\n')
    made = fresh_kettle("create", "thinker", "-f", "Modelfile")
    assert made.returncode == 0, made.stderr
    (tmp_path / "Plain").write_text(f"FROM {smollm2_path}\nPARAMETER num_predict 4\n")
    assert fresh_kettle("create", "plain", "-f", "Plain").returncode == 0
    return fresh_kettle


@pytest.mark.slow
def test_run_shows_hides_or_skips_the_thinking(thinker: Kettle) -> None:
    shown = thinker("run", "thinker", QUESTION)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(THINKING_START) and THINKING_END in shown.stdout
    thinking = shown.stdout[len(THINKING_START):shown.stdout.index(THINKING_END)]
    assert thinking.strip()
    hidden = thinker("run", "thinker", "--hidethinking", QUESTION)
    assert hidden.returncode == 0 and THINKING_START not in hidden.stdout and thinking not in hidden.stdout
    plain = thinker("run", "thinker", "--think=false", QUESTION)
    assert plain.returncode == 0 and THINKING_START not in plain.stdout and plain.stdout.strip()
    refused = thinker("run", "plain", "--think", "hi")
    assert refused.returncode != 0 and "does not support thinking" in refused.stderr

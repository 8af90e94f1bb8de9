"""The CLI's formatting against the outputs ollama's Go code gives for the same inputs."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest

from kettle.cli.display import (
    WordWrapper, go_duration, go_value, human_bytes, human_time, metrics_summary, render_table, show_info,
)


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"),
    (1, "1ns"),
    (999, "999ns"),
    (1_500, "1.5µs"),
    (1_000_000, "1ms"),
    (12_345_678, "12.345678ms"),
    (736_609_019, "736.609019ms"),
    (1_000_000_000, "1s"),
    (6_262_875_933, "6.262875933s"),
    (60_000_000_000, "1m0s"),
    (61_500_000_000, "1m1.5s"),
    (3_600_000_000_000, "1h0m0s"),
    (3_723_000_000_001, "1h2m3.000000001s"),
    (-1_500_000, "-1.5ms"),
])
def test_go_duration_matches_go(ns: int, text: str) -> None:
    assert go_duration(ns) == text


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1 KB"), (1500, "1.5 KB"), (98_000_000, "98 MB"),
    (98_771_968, "98 MB"), (2_019_377_376, "2.0 GB"), (1_500_000_000, "1.5 GB"), (12_300_000_000, "12 GB"),
    (3 * 10**12, "3 TB"),
])
def test_human_bytes_matches_ollama(n: int, text: str) -> None:
    assert human_bytes(n) == text


NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(seconds=0.5), "Less than a second ago"),
    (timedelta(seconds=1), "1 second ago"),
    (timedelta(seconds=42), "42 seconds ago"),
    (timedelta(seconds=90), "About a minute ago"),
    (timedelta(minutes=59), "59 minutes ago"),
    (timedelta(minutes=70), "About an hour ago"),
    (timedelta(hours=30), "30 hours ago"),
    (timedelta(days=5), "5 days ago"),
    (timedelta(days=20), "2 weeks ago"),
    (timedelta(days=100), "3 months ago"),
    (timedelta(days=800), "2 years ago"),
    (timedelta(minutes=-4, seconds=-30), "4 minutes from now"),
    (timedelta(days=-365 * 300), "Forever"),
])
def test_human_time_matches_ollama(delta: timedelta, text: str) -> None:
    assert human_time(NOW - delta, now=NOW) == text


def test_human_time_reads_go_timestamps_and_zero() -> None:
    assert human_time("2024-12-31T23:57:00.123456789Z", now=NOW) == "2 minutes ago"
    assert human_time("2025-01-01T00:00:00+01:00", now=NOW) == "About an hour ago"
    assert human_time("0001-01-01T00:00:00Z", "Never", now=NOW) == "Never"
    assert human_time(None, "Never") == "Never"
    assert human_time("garbage", "Never") == "Never"


def test_metrics_summary_lines_and_rates() -> None:
    stats = {
        "total_duration": 6_262_875_933, "load_duration": 736_609_019,
        "prompt_eval_count": 37, "prompt_eval_duration": 1_692_477_161,
        "eval_count": 46, "eval_duration": 3_804_746_158,
    }
    assert metrics_summary(stats) == [
        "total duration:       6.262875933s",
        "load duration:        736.609019ms",
        "prompt eval count:    37 token(s)",
        "prompt eval duration: 1.692477161s",
        "prompt eval rate:     21.86 tokens/s",
        "eval count:           46 token(s)",
        "eval duration:        3.804746158s",
        "eval rate:            12.09 tokens/s",
    ]


def test_metrics_summary_leaves_out_zero_values() -> None:
    lines = metrics_summary({"total_duration": 5, "load_duration": 0, "eval_count": 3, "eval_duration": 0})
    assert lines == ["total duration:       5ns", "eval count:           3 token(s)"]
    assert metrics_summary({}) == []


def test_go_value_prints_as_go_percent_hash_v() -> None:
    assert [go_value(v) for v in (1.0, 0.9, 4096, True, "<|im_end|>", 1e-05)] == [
        "1", "0.9", "4096", "true", '"<|im_end|>"', "1e-05"]


def test_render_table_aligns_columns() -> None:
    out = render_table(["NAME", "ID"], [["smollm2:latest", "0a027f81b98f"], ["a:b", "c"]])
    assert out == "NAME              ID\nsmollm2:latest    0a027f81b98f\na:b               c\n"
    assert render_table(None, []) == ""


def test_show_info_sections() -> None:
    resp = {
        "details": {"family": "llama", "parameter_size": "134.52M", "quantization_level": "Q4_1"},
        "model_info": {"general.architecture": "llama", "llama.context_length": 8192, "llama.embedding_length": 576.0},
        "capabilities": ["completion"],
        "parameters": 'stop                           "<|im_end|>"',
        "system": "\n\nYou are Mario.\nLine two\nLine three\n",
        "license": "",
    }
    out = show_info(resp)
    assert out.startswith("  Model\n    architecture        llama\n    parameters          134.52M\n")
    assert "    context length      8192\n" in out and "    embedding length    576\n" in out
    assert "  Capabilities\n    completion\n" in out
    assert '  Parameters\n    stop    "<|im_end|>"\n' in out
    assert "  System\n    You are Mario.\n    Line two\n\n" in out  # first two non-empty lines only
    assert "License" not in out


def test_word_wrapper_moves_a_word_to_the_next_line() -> None:
    out = io.StringIO()
    w = WordWrapper(out, 20)  # wraps past column 15
    w.write("hello there general kenobi")
    # "gen" reaches the margin: back 3 columns, clear the line's end, reprint it below
    assert out.getvalue() == "hello there gen\x1b[3D\x1b[K\ngeneral kenobi"
    w.write("\nab")
    assert out.getvalue().endswith("kenobi\nab") and w.line_length == 2
    plain = io.StringIO()
    WordWrapper(plain, None).write("hello there general kenobi")
    assert plain.getvalue() == "hello there general kenobi"

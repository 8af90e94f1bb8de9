"""What the CLI prints, formatted the way ollama's CLI formats it.

Pure functions of their inputs (plus the clock for relative times), so they are
tested without a model or a terminal:

* ``go_duration(ns)``: Go's ``time.Duration.String()`` (``1.234567ms``, ``2m3.5s``)
* ``metrics_summary(stats)``: the ``--verbose`` lines of ollama's ``api.Metrics.Summary``
* ``human_bytes`` / ``human_time``: ollama's ``format.HumanBytes`` / ``format.HumanTime``
* ``go_value``: a parameter value as Go's ``%#v`` prints it (``/show parameters``)
* ``render_table``: the NAME/ID/SIZE/MODIFIED tables of ``list`` and ``ps``
* ``show_info``: ``kettle show MODEL`` (sections Model, Capabilities, Parameters, System, License)
* ``WordWrapper``: ollama's streaming word wrap for a terminal
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from kettle.modelfile.builder import format_parameter

# -- durations -----------------------------------------------------------------

NS_PER = {"ns": 1, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}  # U+00B5, as Go writes it
NS_PER_MINUTE = 60 * NS_PER["s"]
NS_PER_HOUR = 60 * NS_PER_MINUTE


def _fraction(value: int, scale: int) -> str:
    """``value / scale`` in decimal, exact, trailing zeros (and a bare point) dropped."""
    whole, rest = divmod(value, scale)
    if not rest:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{str(rest).zfill(digits).rstrip('0')}"


def go_duration(ns: int) -> str:
    """Nanoseconds as Go's ``time.Duration.String()`` prints them.

    ``0s``; under a second the largest unit that fits (``850ns``, ``1.5µs``,
    ``12.345678ms``); from a second up ``[<h>h][<m>m]<s>s`` (``1m0s``, ``2h0m1.5s``).
    """
    ns = int(ns)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < NS_PER["s"]:
        unit = next(name for name in ("ms", "µs", "ns") if u >= NS_PER[name])
        return sign + _fraction(u, NS_PER[unit]) + unit
    hours, rest = divmod(u, NS_PER_HOUR)
    minutes, rest = divmod(rest, NS_PER_MINUTE)
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return sign + out + _fraction(rest, NS_PER["s"]) + "s"


def _rate(count: int, duration_ns: int) -> str:
    return f"{count / (duration_ns / NS_PER['s']):.2f} tokens/s"


def metrics_summary(stats: Mapping[str, Any]) -> list[str]:
    """The ``--verbose`` lines for a final response's stats (ns), as ollama prints them.

    A line is left out when its value is zero or missing, as ollama does.
    """
    def get(key: str) -> int:
        value = stats.get(key)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    total, load = get("total_duration"), get("load_duration")
    p_count, p_dur = get("prompt_eval_count"), get("prompt_eval_duration")
    e_count, e_dur = get("eval_count"), get("eval_duration")
    lines = []
    if total > 0:
        lines.append(f"total duration:       {go_duration(total)}")
    if load > 0:
        lines.append(f"load duration:        {go_duration(load)}")
    if p_count > 0:
        lines.append(f"prompt eval count:    {p_count} token(s)")
    if p_dur > 0:
        lines.append(f"prompt eval duration: {go_duration(p_dur)}")
        lines.append(f"prompt eval rate:     {_rate(p_count, p_dur)}")
    if e_count > 0:
        lines.append(f"eval count:           {e_count} token(s)")
    if e_dur > 0:
        lines.append(f"eval duration:        {go_duration(e_dur)}")
        lines.append(f"eval rate:            {_rate(e_count, e_dur)}")
    return lines


# -- sizes and times -----------------------------------------------------------

BYTE_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3))  # decimal, as ollama


def human_bytes(n: int) -> str:
    """``format.HumanBytes``: ``98 MB``, ``1.5 GB``, ``2 KB``, ``512 B``."""
    for unit, scale in BYTE_UNITS:
        if n >= scale:
            value = n / scale
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{n} B"


def _human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds // 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    for limit, divisor, unit in ((24 * 7 * 2, 24, "days"), (24 * 30 * 2, 24 * 7, "weeks"), (24 * 365 * 2, 24 * 30, "months")):
        if hours < limit:
            return f"{hours // divisor} {unit}"
    return f"{hours // (24 * 365)} years"


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str | datetime | None) -> datetime | None:
    """An RFC 3339 time (nanoseconds allowed, as Go writes them) or a datetime; None if unreadable."""
    if value is None or isinstance(value, datetime):
        return value
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.year <= 1:  # Go's zero time
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def human_time(when: str | datetime | None, zero: str = "Never", now: datetime | None = None) -> str:
    """``format.HumanTime``: ``2 weeks ago``, ``4 minutes from now``, ``Forever``, or ``zero``."""
    t = parse_time(when)
    if t is None:
        return zero
    delta = ((now or datetime.now(timezone.utc)) - t).total_seconds()
    if delta / 3600 / 24 / 365 < -20:
        return "Forever"
    if delta < 0:
        return _human_duration(-delta) + " from now"
    return _human_duration(delta) + " ago"


# -- tables --------------------------------------------------------------------

COLUMN_GAP = "    "


def render_table(header: Sequence[str] | None, rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Left-aligned columns, each as wide as its widest cell, no borders (ollama's tables)."""
    all_rows = ([list(header)] if header else []) + [list(r) for r in rows]
    if not all_rows:
        return ""
    n = max(len(r) for r in all_rows)
    widths = [max((len(r[i]) for r in all_rows if i < len(r)), default=0) for i in range(n)]
    lines = []
    for r in all_rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append((indent + COLUMN_GAP.join(cells)).rstrip())
    return "\n".join(lines) + "\n"


# -- parameters ------------------------------------------------------------------

PARAM_NAME_WIDTH = 30  # ollama: fmt.Sprintf("%-*s %#v", 30, key, value)


def go_value(value: Any) -> str:
    """A parameter value as Go's ``%#v`` prints it: strings quoted, ``1`` for 1.0."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return format_parameter(value)


# -- show ------------------------------------------------------------------------

TEXT_SECTION_LINES = 2  # System and License show their first two non-empty lines


def _first_lines(text: str) -> list[list[str]]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [["", line] for line in lines[:TEXT_SECTION_LINES]]


def _number(value: Any) -> str:
    if isinstance(value, float) and value == math.trunc(value):
        return str(int(value))
    return str(value)


def show_info(resp: Mapping[str, Any]) -> str:
    """``kettle show MODEL``: the sections ollama prints, from an ``/api/show`` response."""
    details = resp.get("details") or {}
    info = resp.get("model_info") or {}
    arch = info.get("general.architecture") or details.get("family") or ""
    model_rows = [["", "architecture", str(arch)], ["", "parameters", str(details.get("parameter_size", ""))]]
    for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
        if f"{arch}.{key}" in info:
            model_rows.append(["", label, _number(info[f"{arch}.{key}"])])
    model_rows.append(["", "quantization", str(details.get("quantization_level", ""))])
    sections: list[tuple[str, list[list[str]]]] = [("Model", model_rows)]
    capabilities = resp.get("capabilities") or []
    if capabilities:
        sections.append(("Capabilities", [["", str(c)] for c in capabilities]))
    params = resp.get("parameters") or ""
    if params:
        sections.append(("Parameters", [["", *line.split(None, 1)] for line in params.splitlines() if line.strip()]))
    for key, title in (("system", "System"), ("license", "License")):
        text = resp.get(key) or ""
        if text.strip():
            sections.append((title, _first_lines(text)))
    out = []
    for title, rows in sections:
        out.append(f"  {title}\n" + render_table(None, rows) + "\n")
    return "".join(out)


# -- streaming word wrap ---------------------------------------------------------

WRAP_MARGIN = 5  # ollama wraps at the terminal width minus 5
MIN_WRAP_WIDTH = 10


class WordWrapper:
    """Writes streamed text, moving a word that would cross the margin to the next line.

    As ollama's ``displayResponse``: characters are printed as they arrive; when
    a line fills up, the partial word is erased (cursor back, clear to end of
    line) and reprinted on a new line. ``width`` None or under 10: no wrapping.
    """

    def __init__(self, out: TextIO, width: int | None) -> None:
        self.out = out
        self.width = width if width is not None and width >= MIN_WRAP_WIDTH else None
        self.line_length = 0
        self.word = ""

    def write(self, text: str) -> None:
        if self.width is None:
            self.out.write(text)
            return
        limit = self.width - WRAP_MARGIN
        for ch in text:
            if ch == "\n":
                self.out.write(ch)
                self.line_length, self.word = 0, ""
            elif self.line_length + 1 > limit and ch != " ":
                if len(self.word) > self.width - 2 * WRAP_MARGIN:  # a word longer than a line: break it
                    self.out.write("\n" + ch)
                    self.line_length, self.word = 1, ch
                    continue
                if self.word:
                    self.out.write(f"\x1b[{len(self.word)}D")
                self.out.write("\x1b[K\n" + self.word + ch)
                self.word += ch
                self.line_length = len(self.word)
            elif ch == " " and self.line_length + 1 > limit:
                self.out.write("\n")
                self.line_length, self.word = 0, ""
            else:
                self.out.write(ch)
                self.line_length += 1
                self.word = "" if ch == " " else self.word + ch
        self.out.flush()

    def reset(self) -> None:
        self.line_length, self.word = 0, ""

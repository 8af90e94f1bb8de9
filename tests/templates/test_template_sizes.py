"""sizes.text_size: never below the real length of str(), repr(), json.dumps() or pformat() (the last
three of a value inside a container, as the sandbox asks)."""

from __future__ import annotations

import json
from pprint import pformat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kettle.templates.sizes import quoted_size, text_size

BIG = 1 << 40

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.tuples(inner, inner), st.dictionaries(st.text(max_size=8), inner, max_size=6),
), max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(values)
def test_text_size_bounds_every_rendering(v: object) -> None:
    assert text_size(v, BIG) >= len(str(v))
    quoted = text_size((v,), BIG)  # inside a container a string is quoted: what tojson and pprint ask
    assert quoted >= len(repr(v))
    assert quoted >= len(pformat(v))
    assert text_size((v,), BIG) >= len(json.dumps(v, ensure_ascii=True))
    assert text_size((v,), BIG) >= len(json.dumps(v, ensure_ascii=False))
    assert text_size((v,), BIG, indent=4 + 2) >= len(json.dumps(v, indent=4))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_quoted_size_bounds_repr_and_json(s: str) -> None:
    assert quoted_size(s) >= max(len(repr(s)), len(json.dumps(s)), len(json.dumps(s, ensure_ascii=False)))


@pytest.mark.parametrize("value,limit,expected", [
    ("x" * 100, 10, 100),  # a string is its length, whatever the limit
    (["x" * 100] * 1000, 10_000, 10_001),  # stops early: limit + 1
    ([], 100, 16),
])
def test_text_size_table(value: object, limit: int, expected: int) -> None:
    assert text_size(value, limit) == expected


def test_shared_items_are_measured_once() -> None:
    inner = ["y" * 10] * 1000
    ticks: list[int] = []
    size = text_size([inner] * 1000, BIG, tick=lambda: ticks.append(1))
    assert size >= len(str([inner] * 1000))
    assert len(ticks) < 10  # the inner list was walked once, not a thousand times


def test_a_cycle_is_finite() -> None:
    from jinja2.utils import Namespace

    ns = Namespace(a=1)
    ns["self"] = ns
    assert 0 < text_size(ns, BIG) < 1000

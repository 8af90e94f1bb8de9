"""StopMatcher: examples, then the split-invariance property with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kettle.errors import InvalidParameter
from kettle.sampling import StopMatcher


def run(stops, pieces) -> tuple[list[str], bool, str]:
    """(what each feed emitted, whether a stop was hit, what flush released)."""
    matcher = StopMatcher(stops)
    emitted, hit = [], False
    for piece in pieces:
        out, hit = matcher.feed(piece)
        emitted.append(out)
        if hit:
            break
    return emitted, hit, matcher.flush()


def reference(text: str, stops) -> tuple[str, bool]:
    """The text before the stop occurrence that ends first (longest on ties), and whether any."""
    found = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
    if not found:
        return text, False
    return text[: min(found)[1]], True


@pytest.mark.parametrize("stops,pieces,emitted,hit,flushed", [
    ([], ["a", "b"], ["a", "b"], False, ""),
    (["END"], ["hello ", "world"], ["hello ", "world"], False, ""),
    (["END"], ["abc", "EN", "D", "xyz"], ["abc", "", ""], True, ""),
    (["END"], ["abcE", "Nx"], ["abc", "ENx"], False, ""),  # held back, then released
    (["END"], ["abEN"], ["ab"], False, "EN"),  # held back until flush
    (["<|im_end|>"], ["Hi", "<|", "im", "_end", "|>", "more"], ["Hi", "", "", "", ""], True, ""),
    (["\n\n"], ["a\n", "\nb"], ["a", ""], True, ""),
    (["ab", "b"], ["xab"], ["x"], True, ""),  # both end at 3: the longer one starts earlier
    (["abcd", "c"], ["abcd"], ["ab"], True, ""),  # "c" ends first
    (["abcd", "c"], ["ab", "cd"], ["", "ab"], True, ""),
    (["aab"], ["aaa", "ab"], ["a", "a"], True, ""),  # overlapping prefixes
    (["END"], ["", "x", ""], ["", "x", ""], False, ""),
])
def test_examples(stops, pieces, emitted, hit, flushed):
    assert run(stops, pieces) == (emitted, hit, flushed)


def test_after_a_hit_nothing_more_is_emitted():
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("aSTOPb") == ("a", True)
    assert matcher.stopped and matcher.matched == "STOP"
    assert matcher.feed("more text") == ("", True)
    assert matcher.flush() == ""


def test_matched_names_the_stop_string():
    matcher = StopMatcher(["x", "yz"])
    matcher.feed("ay")
    matcher.feed("z")
    assert matcher.matched == "yz"


def test_held_text_is_bounded_by_the_longest_stop():
    matcher = StopMatcher(["abcdef"])
    for _ in range(100):
        out, hit = matcher.feed("abcde")  # never completes: "abcdea..." breaks the prefix
        assert not hit
    assert len(matcher.flush()) <= 5


@pytest.mark.parametrize("stops", [[""], ["a", ""], [None], [3]])
def test_invalid_stops(stops):
    with pytest.raises(InvalidParameter):
        StopMatcher(stops)


def test_single_string_is_one_stop():
    assert StopMatcher("ab").stops == ("ab",)


ALPHABET = "ab<|>\n"


@st.composite
def split_text(draw):
    text = draw(st.text(alphabet=ALPHABET, max_size=40))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[i:j] for i, j in zip(bounds, bounds[1:])]


@settings(max_examples=400, deadline=None)
@given(
    stops=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), max_size=3),
    case=split_text(),
)
def test_any_split_gives_the_reference_result(stops, case):
    text, pieces = case
    emitted, hit, flushed = run(stops, pieces)
    expected, expected_hit = reference(text, stops)
    assert hit == expected_hit
    assert "".join(emitted) + flushed == expected
    if hit:
        assert flushed == ""


@settings(max_examples=200, deadline=None)
@given(stops=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), min_size=1, max_size=3),
       case=split_text())
def test_emitted_text_never_contains_a_stop_and_is_released_early(stops, case):
    text, pieces = case
    matcher = StopMatcher(stops)
    so_far = ""
    longest = max(len(s) for s in stops)
    for n, piece in enumerate(pieces, 1):
        out, hit = matcher.feed(piece)
        so_far += out
        if hit:
            break
        assert not any(s in so_far for s in stops)
        # everything but a possible stop prefix (shorter than the longest stop) is out already
        seen = "".join(pieces[:n])
        assert seen.startswith(so_far) and len(seen) - len(so_far) < longest

"""mlc's callbacks and the once-per-process CPU-only warning (no model needed)."""

from __future__ import annotations

import threading
import warnings

import pytest

import kettle
from kettle.compat.callback import StreamIterator, StreamToStdout, get_delta_message
from kettle.gpu import CPUOnlyWarning, check_device, warn_gpu_request
from kettle.errors import InvalidParameter


@pytest.mark.parametrize(
    ("old", "new", "delta"),
    [
        ("", "Hello", "Hello"),
        ("Hel", "Hello", "lo"),
        ("Hello", "Hello", ""),
        ("Help", "Hello", "\b \blo"),  # mlc erases what changed, then writes the rest
        ("abc", "", "\b \b\b \b\b \b"),
        ("héllo", "héllo wörld", " wörld"),  # characters, not bytes
    ],
)
def test_delta_message(old: str, new: str, delta: str) -> None:
    assert get_delta_message(old, new) == delta


def test_stream_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    cb = StreamToStdout(callback_interval=2)
    for message in ("The", "The sea", "The sea is blue."):
        cb(message)
    cb(stopped=True)
    assert capsys.readouterr().out == "The sea is blue.\n"
    cb("Again")  # the state was reset by stopped=True
    assert capsys.readouterr().out == "Again"


def test_stream_iterator_across_threads() -> None:
    it = StreamIterator(callback_interval=1, timeout=5)

    def produce() -> None:
        for message in ("a", "ab", "ab", "abc"):  # an empty delta does not end the stream
            it(message)
        it(stopped=True)

    thread = threading.Thread(target=produce)
    thread.start()
    assert list(it) == ["a", "b", "", "c"]
    thread.join()


@pytest.mark.parametrize("interval", [0, -1, 1.5, True, "2"])
def test_bad_callback_interval(interval: object) -> None:
    with pytest.raises(InvalidParameter, match="callback_interval"):
        StreamToStdout(callback_interval=interval)  # type: ignore[arg-type]


def test_kettle_callback_is_mlcs_module() -> None:
    assert kettle.callback.StreamToStdout is StreamToStdout


def test_gpu_requests_warn_once(fresh_gpu_warning: None) -> None:
    with pytest.warns(CPUOnlyWarning, match="device='cuda:0'"):
        assert check_device("cuda:0") == "cuda"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any further warning would fail the test
        assert check_device("metal") == "metal"
        assert not warn_gpu_request("gpu_layers", 50)
        assert check_device("auto") == "auto" and check_device("cpu:1") == "cpu"


def test_cpu_devices_do_not_warn(fresh_gpu_warning: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_device("auto")
        check_device("cpu")
    with pytest.warns(CPUOnlyWarning, match="gpu_layers=-1"):
        assert warn_gpu_request("gpu_layers", -1)

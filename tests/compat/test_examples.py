"""The seed's two Python examples, run unchanged but for the import line and the model name.

Each is embedded verbatim; the slow tests run it as written, the fast ones run the same text
with a shorter generation (one setting replaced) so the package stays quick. The scripts in
``examples/`` are these same programs.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from kettle.compat import ChatConfig, CPUOnlyWarning
from tests.compat.conftest import run_script

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# ctransformers (PEERS.md section 4): import line and model name changed.
CTRANSFORMERS_EXAMPLE = '''\
from kettle import AutoModelForCausalLM
llm = AutoModelForCausalLM.from_pretrained("smollm2", model_file="llama-2-7b.Q4_K_M.gguf", model_type="llama", gpu_layers=50, max_new_tokens=256, repetition_penalty=1.1, temperature=0.1, stream=True)
prompt = "AI is going to"
print(llm(prompt, stream=False))
tokens = llm.tokenize(prompt)
import time; start = time.time(); n = 0
for token in llm.generate(tokens):
    print(llm.detokenize(token), end="", flush=True); n += 1
elapsed = time.time() - start
print(f"\\n{n / elapsed:.2f} tokens/s, {1000 * elapsed / n:.1f} ms/token")
'''

# mlc-llm's ChatModule docstring example (PEERS.md section 5.1): import lines and model
# name changed. (``kettle.callback`` is served from ``kettle.compat.callback``.)
MLC_EXAMPLE = '''\
from kettle import ChatModule
from kettle.callback import StreamToStdout

# Create a ChatModule instance
cm = ChatModule(model="smollm2")

# Generate a response for a given prompt
output = cm.generate(
    prompt="What is the meaning of life?",
    progress_callback=StreamToStdout(callback_interval=2),
)

# Print prefill and decode performance statistics
print(f"Statistics: {cm.stats()}\\n")

output = cm.generate(
    prompt="How many points did you list out?",
    progress_callback=StreamToStdout(callback_interval=2),
)

# Reset the chat module by
cm.reset_chat()
'''

SPEED_LINE = re.compile(r"^\d+\.\d\d tokens/s, \d+\.\d ms/token$")
STATS = re.compile(r"^prefill: \d+\.\d tok/s, decode: \d+\.\d tok/s$")


def short(source: str, old: str, new: str) -> str:
    assert source.count(old) == 1, old
    return source.replace(old, new)


def check_ctransformers_output(printed: str, scope: dict[str, object]) -> None:
    """What the script promises: a completion, the streamed tokens, the speed line."""
    *body, speed = printed.rstrip("\n").split("\n")
    assert SPEED_LINE.match(speed), speed
    assert "".join(body).strip(), "the completion and the streamed tokens are printed"
    assert scope["n"] >= 1


def check_mlc_output(printed: str, scope: dict[str, object]) -> None:
    """Streamed answer + newline, the statistics line, streamed second answer + newline."""
    first, _, rest = printed.partition("Statistics: ")
    assert first.endswith("\n") and first.strip(), "the first answer is streamed, then a newline"
    stats_line, _, second = rest.partition("\n\n")
    assert STATS.match(stats_line), stats_line
    assert second == scope["output"] + "\n", "the second answer is streamed exactly, then a newline"
    cm = scope["cm"]
    assert cm.stats() == "prefill: 0.0 tok/s, decode: 0.0 tok/s", "reset_chat clears the statistics"


def test_example_scripts_are_the_embedded_examples() -> None:
    """examples/ holds the same programs (docstrings aside)."""
    for name, source in (("ctransformers_example.py", CTRANSFORMERS_EXAMPLE), ("mlc_chat_example.py", MLC_EXAMPLE)):
        text = (EXAMPLES / name).read_text()
        assert source in text, name


def test_ctransformers_example_short(fresh_gpu_warning: None) -> None:
    source = short(CTRANSFORMERS_EXAMPLE, "max_new_tokens=256", "max_new_tokens=24")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        printed, scope = run_script(source)
    gpu = [w for w in caught if issubclass(w.category, CPUOnlyWarning)]
    assert len(gpu) == 1 and "gpu_layers=50" in str(gpu[0].message)
    check_ctransformers_output(printed, scope)
    assert scope["n"] <= 24


def test_mlc_example_short() -> None:
    source = short(MLC_EXAMPLE, 'ChatModule(model="smollm2")',
                   'ChatModule(model="smollm2", chat_config=ChatConfig(max_gen_len=24, temperature=0))')
    printed, scope = run_script(source, ChatConfig=ChatConfig)
    check_mlc_output(printed, scope)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::kettle.gpu.CPUOnlyWarning")
def test_ctransformers_example_as_written() -> None:
    printed, scope = run_script(CTRANSFORMERS_EXAMPLE)
    check_ctransformers_output(printed, scope)
    assert scope["n"] <= 256


@pytest.mark.slow
def test_mlc_example_as_written() -> None:
    printed, scope = run_script(MLC_EXAMPLE)
    check_mlc_output(printed, scope)

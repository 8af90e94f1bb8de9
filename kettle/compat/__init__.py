"""The Python APIs people already wrote code for, on kettle's engine.

* ctransformers: ``AutoModelForCausalLM.from_pretrained(...) -> LLM`` (``ctransformers.py``)
* mlc-llm's legacy chat: ``ChatModule``, ``ChatConfig``, ``ConvConfig``, ``GenerationConfig``
  (``mlc.py``) and its callbacks (``kettle.callback``, i.e. ``callback.py``)

GPU settings (``gpu_layers``, ``device="cuda"``) are accepted and warn once with
``CPUOnlyWarning`` (``gpu.py``): kettle runs on the CPU.
"""

from kettle.compat.config import Config
from kettle.compat.ctransformers import LLM, AutoModelForCausalLM
from kettle.gpu import CPUOnlyWarning
from kettle.compat.mlc import ChatConfig, ChatModule, ConvConfig, GenerationConfig

__all__ = [
    "AutoModelForCausalLM", "LLM", "Config",
    "ChatModule", "ChatConfig", "ConvConfig", "GenerationConfig",
    "CPUOnlyWarning",
]

"""The ``kettle`` command line: ollama's commands and flags, in argparse."""

from __future__ import annotations

import argparse

from kettle import config
from kettle.cli import commands

DESCRIPTION = "Large language model runner: GGUF models on the CPU, ollama's commands and API."

RUN_HELP = """\
Talk to a model: one answer to PROMPT, or an interactive session without one.

Which word is the model: the first word is MODEL when it is a valid model name
(letters, digits, '_', '-', '.', ':' and '/', as in "smollm2", "gemma3:270m",
"me/mario") or an existing .gguf file; otherwise every word is the prompt and
the default model (smollm2) answers. So `kettle run "What is a kettle?"` asks
smollm2, and `kettle run smollm2 hello` is how a one-word prompt is sent.
Text piped into stdin is put before the prompt and answered once.

A model missing from the store is pulled first (the bundled smollm2 and
gemma3:270m from their packages, any other from its registry). In the
session, type /? for commands, \"\"\" for multi-line input, Ctrl-C to stop an
answer, Ctrl-D or /bye to leave.
"""


def _environment(*names: str) -> str:
    """The help lines of some KETTLE_* settings."""
    width = max(len(n) for n in names)
    lines = [f"  {n:<{width}}  {config.SETTINGS[n].help}" for n in names]
    return "Environment:\n" + "\n".join(lines)


class _IntermixedParser(argparse.ArgumentParser):
    """A command's parser that takes flags between its words, as ollama's does
    (``kettle run smollm2 --verbose "hi"``): argparse alone stops filling a
    ``nargs="*"`` positional at the first flag and refuses the words after it.

    A flag in ``OPTIONAL_VALUE`` takes its value only as ``--flag=VALUE`` (cobra's optional
    values): bare, it means its default, and the next word stays a word of the prompt
    (``kettle run qwen3 --think "why?"``)."""

    OPTIONAL_VALUE = {"--think": "true"}
    _mixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._mixing:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        if args is not None:
            args = [f"{a}={self.OPTIONAL_VALUE[a]}" if a in self.OPTIONAL_VALUE else a for a in args]
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="kettle", description=DESCRIPTION, formatter_class=formatter)
    parser.add_argument("-v", "--version", action="store_true", help="show version information")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_IntermixedParser)
    host_env = _environment("KETTLE_HOST")

    def command(name: str, summary: str, handler, *, aliases: tuple[str, ...] = (), description: str = "",
                epilog: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, aliases=list(aliases), description=description or summary,
                           epilog=epilog or host_env, formatter_class=formatter)
        p.set_defaults(handler=handler)
        return p

    command("serve", "Start kettle's server", commands.cmd_serve, aliases=("start",),
            description="Start kettle's HTTP server (ollama's and OpenAI's APIs) at KETTLE_HOST.",
            epilog=config.describe())

    p = command("create", "Create a model from a Modelfile", commands.cmd_create)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-f", "--file", default="Modelfile", help="name of the Modelfile (default: Modelfile)")
    p.add_argument("-q", "--quantize", default="", help="quantize an F32/F16/BF16 model to this level (q4_K_M, q8_0, ...: kettle quantize's types)")

    p = command("convert", "Convert a Hugging Face checkpoint folder to GGUF", commands.cmd_convert,
                description="Convert a Hugging Face checkpoint (config.json, *.safetensors, tokenizer files) "
                            "to one GGUF file. Supported: Llama and Mistral, Qwen2, Qwen3, Gemma 3, BERT "
                            "(LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
                            "Gemma3ForCausalLM, BertModel, BertForMaskedLM).", epilog=" ")
    p.add_argument("hf_dir", metavar="HF_DIR", help="the checkpoint folder")
    p.add_argument("-o", "--outfile", default=None, metavar="OUT.gguf",
                   help="the GGUF to write (default: HF_DIR-<TYPE>.gguf beside the folder)")
    p.add_argument("--outtype", default="f16", choices=("f16", "bf16", "f32", "q8_0"),
                   help="the type of the matrices (vectors stay f32; default f16)")

    p = command("quantize", "Quantize a GGUF file as llama-quantize does", commands.cmd_quantize,
                description="Write OUT.gguf: IN.gguf (F32/F16/BF16 weights) quantized to TYPE, byte for byte "
                            "as llama.cpp's llama-quantize (no importance matrix). TYPE: F32 F16 BF16 Q4_0 Q4_1 "
                            "Q5_0 Q5_1 Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K "
                            "(Q3_K, Q4_K, Q5_K: the _M mixes; any case).", epilog=" ")
    p.add_argument("input", metavar="IN.gguf")
    p.add_argument("output", metavar="OUT.gguf")
    p.add_argument("type", metavar="TYPE")
    p.add_argument("--allow-requantize", action="store_true",
                   help="re-encode tensors that are already quantized (loses quality)")

    p = command("show", "Show information for a model", commands.cmd_show)
    p.add_argument("model", metavar="MODEL")
    for name in commands.SHOW_FIELDS:
        p.add_argument(f"--{name}", action="store_true", help=f"show the {name} of the model")
    p.add_argument("-v", "--verbose", action="store_true", help="accepted for compatibility (no extra detail yet)")

    p = command("run", "Run a model", commands.cmd_run, description=RUN_HELP,
                epilog=_environment("KETTLE_HOST", "KETTLE_MODELS"))
    p.add_argument("words", nargs="*", metavar="[MODEL] [PROMPT]")
    p.add_argument("--keepalive", default=None, help="how long the server keeps the model loaded (e.g. 5m)")
    p.add_argument("--verbose", action="store_true", help="show timings for the response")
    p.add_argument("--insecure", action="store_true", help="use an insecure (plain http) registry to pull a missing model")
    p.add_argument("--nowordwrap", action="store_true", help="don't wrap words to the next line automatically")
    p.add_argument("--format", default="", help="response format (json)")
    p.add_argument("--think", default=None, metavar="LEVEL",
                   help="--think or --think=VALUE: true/false or high/medium/low/max (thinking models)")
    p.add_argument("--hidethinking", action="store_true", help="hide thinking output (if provided)")

    p = command("stop", "Stop a running model", commands.cmd_stop)
    p.add_argument("model", metavar="MODEL")

    p = command("pull", "Pull a model from a registry", commands.cmd_pull,
                description="Pull a model: [host/][namespace/]model[:tag] from its registry (default "
                            "registry.ollama.ai), hf.co/<user>/<repo>[:<quant>] from Hugging Face (HF_TOKEN for "
                            "private repos), or a bundled model (smollm2, gemma3:270m) from its package. "
                            "An interrupted pull resumes.",
                epilog=_environment("KETTLE_HOST", "KETTLE_MODELS", "KETTLE_STALL_TIMEOUT"))
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--insecure", action="store_true", help="use an insecure (plain http) registry")

    p = command("push", "Push a model to a registry", commands.cmd_push,
                description="Push a stored model to the registry its name's host gives "
                            "(kettle cp mymodel host:port/library/mymodel first).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--insecure", action="store_true", help="use an insecure (plain http) registry")

    p = command("list", "List models", commands.cmd_list, aliases=("ls",))
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX", help="only names that start with this")

    command("ps", "List running models", commands.cmd_ps)

    p = command("cp", "Copy a model", commands.cmd_cp)
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("destination", metavar="DESTINATION")

    p = command("rm", "Remove a model", commands.cmd_rm)
    p.add_argument("models", nargs="+", metavar="MODEL")
    return parser

"""From what a ctransformers / mlc script names to what ``kettle.load`` takes.

``AutoModelForCausalLM.from_pretrained(model_path_or_repo_id, model_file=...)`` and
``ChatModule(model)`` accept:

* a ``.gguf`` file (any file is checked for the GGUF magic);
* a directory holding ``.gguf`` files (``model_file`` picks one when there are several);
* anything else is a model name in the kettle store (``"smollm2"``, ``"gemma3:270m"``); a
  store model is one GGUF, so ``model_file`` has nothing to pick there and is not used.
  kettle never downloads from the Hugging Face Hub: ``"TheBloke/Llama-2-7B-GGUF"`` works
  only if a model of that name is in the store.

It also holds ctransformers' ``model_type`` names and the GGUF architectures each stands for.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from kettle.errors import InvalidParameter, ModelNotFound
from kettle.gguf.constants import MAGIC

__all__ = ["MODEL_TYPES", "locate_model", "check_model_type", "check_architecture", "not_found"]

GGUF_SUFFIX = ".gguf"

# ctransformers' model_type -> the GGUF ``general.architecture`` values it stands for
# (None: any). ctransformers calls every GGUF file "gguf"; the rest are its GGML-era names
# plus the architectures kettle runs. kettle loads llama, qwen2 and gemma3 today; a known
# name for another architecture passes this check and then fails as UnsupportedModel.
MODEL_TYPES: dict[str, tuple[str, ...] | None] = {
    "gguf": None,
    "llama": ("llama",),
    "mistral": ("llama",),  # Mistral GGUFs declare the llama architecture
    "qwen": ("qwen", "qwen2"),
    "qwen2": ("qwen2",),
    "gemma": ("gemma", "gemma2", "gemma3"),
    "gemma3": ("gemma3",),
    "gpt2": ("gpt2",),
    "gptj": ("gptj",),
    "gpt_neox": ("gptneox",),
    "dolly-v2": ("gptneox",),
    "falcon": ("falcon",),
    "mpt": ("mpt",),
    "gpt_bigcode": ("starcoder",),
    "starcoder": ("starcoder",),
    "replit": ("replit",),
}


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _from_directory(directory: Path, model_file: str | None, arg: str) -> Path:
    if model_file is not None:
        if not isinstance(model_file, (str, os.PathLike)):
            raise InvalidParameter("model_file", model_file, "expected a file name")
        path = directory / model_file
        if not path.is_file():
            found = sorted(p.name for p in directory.glob(f"*{GGUF_SUFFIX}"))
            raise InvalidParameter("model_file", model_file, f"no such file in {directory} (it holds: {', '.join(found) or 'no .gguf files'})")
        return path
    found = sorted(p for p in directory.glob(f"*{GGUF_SUFFIX}") if p.is_file())
    if not found:
        raise InvalidParameter(arg, str(directory), "the directory holds no .gguf file")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise InvalidParameter("model_file", None, f"{directory} holds several .gguf files ({names}): pick one with model_file=")
    return found[0]


def locate_model(value: object, model_file: str | None = None, arg: str = "model_path_or_repo_id") -> Path | str:
    """A GGUF ``Path`` (checked) for a file or directory, else the string as a store name.

    Raises ``InvalidParameter`` naming ``arg`` (or ``model_file``) when the value is not a
    string/path, or names a file that is not GGUF or a directory without a GGUF file.
    """
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value.strip()):
        raise InvalidParameter(arg, value, "expected a .gguf path, a directory holding one, or a model name")
    path = Path(value).expanduser()
    if path.is_dir():
        path = _from_directory(path, model_file, arg)
    elif not path.exists():
        return os.fspath(value)
    if not _is_gguf(path):
        raise InvalidParameter(arg, str(path), "not a GGUF file (GGML-era .bin files are not supported: convert them to GGUF)")
    return path


def not_found(error: ModelNotFound, arg: str) -> ModelNotFound:
    """``error`` restated so that it names the argument the script passed."""
    return ModelNotFound(
        error.name,
        hint=f"{arg} must be a .gguf file, a directory holding one, or a model in the kettle store "
        "(kettle does not download from the Hugging Face Hub; `kettle pull` or `kettle create` it first)",
    )


def check_model_type(model_type: object) -> tuple[str, ...] | None:
    """The architectures ``model_type`` allows (None: any); ``InvalidParameter`` if unknown."""
    if model_type is None:
        return None
    if not isinstance(model_type, str) or model_type.lower() not in MODEL_TYPES:
        close = difflib.get_close_matches(str(model_type).lower(), list(MODEL_TYPES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InvalidParameter("model_type", model_type, f"unknown model type (known: {', '.join(MODEL_TYPES)}){hint}")
    return MODEL_TYPES[model_type.lower()]


def check_architecture(model_type: str | None, architecture: str) -> None:
    """``InvalidParameter`` when the file's architecture is not one ``model_type`` stands for."""
    allowed = check_model_type(model_type)
    if allowed is None or architecture in allowed:
        return
    fits = sorted((name for name, archs in MODEL_TYPES.items() if archs is not None and architecture in archs),
                  key=lambda name: name != architecture)  # the architecture's own name first
    suggestion = f"model_type={fits[0]!r}" if fits else "model_type='gguf'"
    raise InvalidParameter(
        "model_type", model_type,
        f"the file holds a '{architecture}' model; use {suggestion} or leave model_type out",
    )

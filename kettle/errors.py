"""One tree of typed errors.

Every error kettle raises on purpose is a ``KettleError``. Each names what went
wrong, where, and (when it can) how to fix it. The server maps the classes to
HTTP status codes (see ``kettle/server``); the CLI prints ``str(error)``.
"""

from __future__ import annotations


class KettleError(Exception):
    """Base class of every error kettle raises on purpose."""


class GGUFError(KettleError):
    """A GGUF file is truncated, corrupt, hostile or unsupported.

    ``path`` names the file; the message names the problem.
    """

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


class MetadataError(GGUFError):
    """A hyper-parameter in a GGUF file's metadata is missing, of the wrong type, out of
    range, or disagrees with another one or with the tensors. Names the key, the value
    and what was expected."""

    def __init__(self, path: object, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:120] + "..."
        what = "is missing" if value is None else f"is {shown}"
        super().__init__(path, f"metadata '{key}' {what}; expected {expected}")


class UnsupportedModel(KettleError):
    """The architecture or a tensor type is not one kettle can run."""


class ConvertError(KettleError):
    """A Hugging Face checkpoint cannot be converted: a file is missing, malformed, or
    describes an architecture or tokenizer ``kettle convert`` does not handle."""


class CapabilityError(KettleError):
    """The model cannot do what was asked: an embedding model asked to generate or chat
    (ollama's ``"all-minilm" does not support generate``)."""


class WeightError(KettleError):
    """Tensors a model needs are missing or have the wrong shape (all listed at once)."""


class TokenizerError(KettleError):
    """Tokenizer metadata is missing or inconsistent, or an id is out of range."""


class TemplateError(KettleError):
    """A chat/prompt template failed to parse or to render (or hit a limit)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class ModelfileError(KettleError):
    """A Modelfile is invalid; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class InvalidParameter(KettleError, ValueError):
    """An option has the wrong type or is out of range."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"invalid value for {name!r}: {value!r} ({reason})")


class SamplingError(KettleError):
    """The sampler cannot draw a token: the logits are NaN, +inf, all -inf, or the wrong shape.

    This means the model produced a broken distribution (or the caller passed the wrong row);
    kettle never samples silently from such a distribution.
    """


class ModelNotFound(KettleError):
    """No model of that name in the store (nor a GGUF file at that path)."""

    def __init__(self, name: str, hint: str = "") -> None:
        self.name = name
        msg = f"model '{name}' not found"
        super().__init__(f"{msg}, {hint}" if hint else msg)


class ContextOverflow(KettleError):
    """A sequence would grow past the context window (num_ctx)."""

    def __init__(self, needed: int, num_ctx: int) -> None:
        self.needed = needed
        self.num_ctx = num_ctx
        super().__init__(
            f"the input needs {needed} tokens but the context window holds {num_ctx}; "
            f"raise num_ctx or shorten the input"
        )


class Cancelled(KettleError):
    """A generation was cancelled from another thread."""


class StoreError(KettleError):
    """The model store could not complete an operation."""


class RegistryError(StoreError):
    """A registry refused a pull or push, or answered something kettle will not accept (a bad
    digest, a size or hash that does not match, an oversized or malformed manifest, a redirect
    or token realm kettle will not follow). ``status`` is the registry's HTTP code, when known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ServerBusy(KettleError):
    """The request queue is full; try again later."""


class StoreFull(StoreError):
    """The disk holding the model store is full (or a file-size limit was reached).

    The partial file was removed; the message says which store and how to make room.
    """


class DigestMismatch(StoreError):
    """Bytes do not hash to the digest that names them: an upload that is not the blob
    its digest names, or a stored blob that changed on disk since it was written."""

    def __init__(self, message: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class InsufficientMemory(KettleError):
    """Loading a model (its KV cache and working buffers) needs more memory than is available.

    ``required`` and ``available`` are bytes; nothing of the load is kept.
    """

    def __init__(self, message: str, required: int, available: int) -> None:
        self.required = required
        self.available = available
        super().__init__(message)

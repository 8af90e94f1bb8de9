"""Model names: ``[host/][namespace/]model[:tag]``, as ollama spells them.

Grammar (ollama ``types/model/name.go``; parts are ASCII)::

    name      := [ [ host "/" ] namespace "/" ] model [ ":" tag ]
    host      := first (first | "-" | "." | ":")*     1..350 chars (":" for a port)
    namespace := first (first | "-")*                 1..80 chars (no ".")
    model     := first (first | "-" | ".")*           1..80 chars
    tag       := first (first | "-" | ".")*           1..80 chars
    first     := "A".."Z" | "a".."z" | "0".."9" | "_"

A leading ``scheme://`` before the host is dropped. Missing parts take the
defaults ``registry.ollama.ai``, ``library`` and ``latest``; a separator with
nothing on one side (``"model:"``, ``"/model"``) marks that part as
``MISSING``, which no default fills and which is never valid.

Parsing never fails: ``parse_name`` returns a ``ModelName`` for any string,
and ``ModelName.is_valid()`` is the separate check. ``filepath_parts()`` is the
only way to turn a name into path components, and it refuses an invalid name,
so no filesystem path is ever built from one (``../x`` has the namespace
``..``, which is invalid). Names compare case-insensitively (``key()``), as in
ollama; the parts keep the case they were written in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kettle.errors import StoreError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

# Marks a part that a separator promised but that is empty ("model:" or "/m").
# It contains "!", so it never passes the character check.
MISSING = "!MISSING!"

_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class Part(enum.Enum):
    """The parts of a name: (label, longest length, characters allowed after the first)."""

    HOST = ("host", 350, _FIRST | frozenset("-.:"))
    NAMESPACE = ("namespace", 80, _FIRST | frozenset("-"))
    MODEL = ("model", 80, _FIRST | frozenset("-."))
    TAG = ("tag", 80, _FIRST | frozenset("-."))

    @property
    def label(self) -> str:
        return self.value[0]

    @property
    def max_len(self) -> int:
        return self.value[1]

    @property
    def rest_chars(self) -> frozenset[str]:
        return self.value[2]

    def check(self, text: str) -> str | None:
        """Why ``text`` is not a valid part of this kind, or None when it is."""
        label = self.label
        if text == MISSING or text == "":
            return f"the {label} is empty"
        if len(text) > self.max_len:
            return f"the {label} is longer than {self.max_len} characters"
        if text[0] not in _FIRST:
            return f"the {label} must start with a letter, a digit or '_'"
        bad = next((c for c in text[1:] if c not in self.rest_chars), None)
        if bad is not None:
            return f"the {label} may not contain {bad!r}"
        return None


@dataclass(frozen=True)
class ModelName:
    """A parsed, possibly invalid, model name. Build one with ``parse_name``."""

    host: str
    namespace: str
    model: str
    tag: str

    def problem(self) -> str | None:
        """The first reason this name is invalid, or None when it is valid."""
        for part, text in zip(Part, (self.host, self.namespace, self.model, self.tag)):
            reason = part.check(text)
            if reason is not None:
                return reason
        return None

    def is_valid(self) -> bool:
        return self.problem() is None

    def display(self) -> str:
        """The short form ollama shows: ``smollm2:latest``, ``me/m:1b``, ``host/ns/m:t``."""
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        else:
            prefix = ""
        return f"{prefix}{self.model}:{self.tag}"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def key(self) -> tuple[str, str, str, str]:
        """A case-insensitive identity, for comparisons and dict keys."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def same_as(self, other: ModelName) -> bool:
        return self.key() == other.key()

    def filepath_parts(self) -> tuple[str, str, str, str]:
        """``(host, namespace, model, tag)`` for the manifest path; StoreError if invalid."""
        reason = self.problem()
        if reason is not None:
            raise StoreError(f"invalid model name {str(self)!r}: {reason}")
        return (self.host, self.namespace, self.model, self.tag)


def _cut_last(text: str, sep: str) -> tuple[str, str, bool]:
    """Split at the last ``sep``; an empty side becomes MISSING."""
    i = text.rfind(sep)
    if i < 0:
        return text, "", False
    return (text[:i] or MISSING), (text[i + len(sep):] or MISSING), True


def parse_name_bare(text: str) -> ModelName:
    """Split ``text`` into parts without filling defaults (missing parts are "")."""
    host = namespace = tag = ""
    s = text
    if s.rfind(":") > s.rfind("/"):  # "/" cannot appear in a tag: a later ":" starts one
        s, tag, _ = _cut_last(s, ":")
    s, model, promised = _cut_last(s, "/")
    if not promised:
        return ModelName(host, namespace, s, tag)
    s, namespace, promised = _cut_last(s, "/")
    if not promised:
        return ModelName(host, s, model, tag)
    scheme, sep, rest = s.partition("://")
    host = rest if sep else scheme
    return ModelName(host, namespace, model, tag)


def parse_name(text: str) -> ModelName:
    """Parse ``text`` and fill the default host, namespace and tag. Never raises."""
    bare = parse_name_bare(text)
    return ModelName(
        host=bare.host or DEFAULT_HOST,
        namespace=bare.namespace or DEFAULT_NAMESPACE,
        model=bare.model,
        tag=bare.tag or DEFAULT_TAG,
    )


HUGGING_FACE_HOSTS = frozenset({"hf.co", "huggingface.co"})


def is_hugging_face(name: ModelName) -> bool:
    """``hf.co/<user>/<repo>[:<quant>]`` (or ``huggingface.co/...``): Hugging Face's registry,
    which speaks the same protocol (the tag names the quantization, case-insensitively)."""
    return name.host.lower() in HUGGING_FACE_HOSTS


def scheme_of(text: str) -> str | None:
    """The ``http`` or ``https`` a name was written with (``http://host/ns/m``), else None."""
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.lower() in ("http", "https") else None


def valid_name(name: str | ModelName) -> ModelName:
    """``name`` parsed (when a string) and checked; StoreError names the problem."""
    parsed = parse_name(name) if isinstance(name, str) else name
    reason = parsed.problem()
    if reason is not None:
        shown = name if isinstance(name, str) else str(name)
        raise StoreError(f"invalid model name {shown!r}: {reason}")
    return parsed

"""The CLI as a client of a kettle (or ollama) server: ollama's REST API over httpx.

Streamed routes (``/api/chat``, ``/api/generate``, ``/api/pull``,
``/api/create``) are read as NDJSON, one object per line; a line with an
``error`` key ends the stream with ``ServerError``, as ollama's client does.
Non-streamed errors are ``{"error": ...}`` bodies with a 4xx/5xx status.

``create`` does what ollama's CLI does before it calls ``/api/create``: it
parses the Modelfile here, checks the FROM and ADAPTER files on this machine
by the in-process create's rules (``kettle.modelfile.files``: nothing else is
ever read or sent), uploads them as blobs (``HEAD``/``POST /api/blobs/<digest>``,
skipped when the server has it) and sends the structured request (``from`` or ``files``,
``adapters``, ``template``, ``system``, ``license``, ``parameters``,
``messages``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from kettle import config
from kettle.cli.backend import Report, ServerError
from kettle.errors import ModelfileError
from kettle.modelfile import Modelfile, interpret
from kettle.modelfile.files import (
    FROM_NOT_FOUND,
    checkpoint_dir,
    convert_checkpoint,
    open_adapter_file,
    open_model_file,
)
from kettle.store.manifest import is_digest, normalize_digest
from kettle.store.names import parse_name

CONNECT_TIMEOUT_S = 5.0
HASH_CHUNK = 1 << 20


def _error_of(resp: httpx.Response) -> ServerError:
    try:
        body = resp.json()
        message = body.get("error") if isinstance(body, dict) else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        message = None
    if not isinstance(message, str) or not message:
        message = (resp.text or resp.reason_phrase or "").strip() or f"the server answered {resp.status_code}"
    return ServerError(message, resp.status_code)


class HttpStream:
    """One NDJSON response, iterated object by object (see ``backend.Generation``)."""

    def __init__(self, client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> None:
        self._cm = client.stream(method, path, json=body)
        self._resp = self._cm.__enter__()
        self._closed = False
        if self._resp.status_code >= 400:
            self._resp.read()
            error = _error_of(self._resp)
            self.close()
            raise error

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in self._resp.iter_lines():
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    raise ServerError(f"the server sent a line that is not JSON: {line[:200]!r}", self._resp.status_code) from None
                if not isinstance(obj, dict):
                    raise ServerError(f"the server sent {type(obj).__name__}, not an object", self._resp.status_code)
                if "error" in obj:
                    raise ServerError(str(obj["error"]), self._resp.status_code)
                yield obj
        except httpx.HTTPError as e:
            raise ServerError(f"the connection to the server failed: {e}", 0) from None
        finally:
            self.close()

    def interrupt(self) -> None:
        # Called in a signal handler while the main thread may block in a read:
        # only an exception gets it out. The caller catches it and closes.
        raise KeyboardInterrupt

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cm.__exit__(None, None, None)


def file_digest(f: BinaryIO) -> str:
    """The digest of an open file's content, from its start."""
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(HASH_CHUNK):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(HASH_CHUNK):
        yield chunk


class HttpBackend:
    """``backend.Backend`` over HTTP, against the server at ``url``."""

    remote = True

    def __init__(self, url: str) -> None:
        self.address = url
        keys = config.api_keys()
        self._client = httpx.Client(
            base_url=url, timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S), trust_env=False,
            headers={"Authorization": f"Bearer {keys[0]}"} if keys else None,
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._client.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise ServerError(f"cannot reach the server at {self.address}: {e}", 0) from None
        if resp.status_code >= 400:
            raise _error_of(resp)
        if not resp.content:
            return {}
        try:
            return resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ServerError(f"the server answered {path} with something that is not JSON", resp.status_code) from None

    def _stream(self, path: str, body: dict[str, Any]) -> HttpStream:
        try:
            return HttpStream(self._client, "POST", path, {**body, "stream": True})
        except httpx.HTTPError as e:
            raise ServerError(f"cannot reach the server at {self.address}: {e}", 0) from None

    # -- models ----------------------------------------------------------------

    def version(self) -> str:
        return str(self._call("GET", "/api/version").get("version", ""))

    def list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/tags").get("models") or [])

    def ps(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/ps").get("models") or [])

    def show(self, model: str) -> dict[str, Any]:
        return self._call("POST", "/api/show", {"model": model})

    def exists(self, model: str) -> bool:
        try:
            self.show(model)
        except ServerError as e:
            if e.status == 404:
                return False
            raise
        return True

    def pull(self, model: str, report: Report, *, insecure: bool = False) -> None:
        for event in self._stream("/api/pull", {"model": model, "insecure": insecure}):
            report(event)

    def push(self, model: str, report: Report, *, insecure: bool = False) -> None:
        for event in self._stream("/api/push", {"model": model, "insecure": insecure}):
            report(event)

    def copy(self, source: str, destination: str) -> None:
        self._call("POST", "/api/copy", {"source": source, "destination": destination})

    def delete(self, model: str) -> None:
        self._call("DELETE", "/api/delete", {"model": model})

    def stop(self, model: str) -> None:
        self._call("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False})

    def load(self, model: str, options: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"model": model, "messages": [], "stream": False}
        if options:
            body["options"] = options
        self._call("POST", "/api/chat", body)

    # -- create ----------------------------------------------------------------

    def _upload(self, f: BinaryIO, label: str) -> str:
        """Make sure the server has the open file ``f`` as a blob; returns its digest.

        The bytes hashed and sent are those of the descriptor the file rules checked."""
        digest = file_digest(f)
        try:
            head = self._client.head(f"/api/blobs/{digest}")
            if head.status_code == 200:
                return digest
            f.seek(0)
            resp = self._client.post(f"/api/blobs/{digest}", content=_chunks(f))
        except (httpx.HTTPError, OSError) as e:
            raise ServerError(f"cannot upload {label} to the server: {e}", 0) from None
        if resp.status_code >= 400:
            raise _error_of(resp)
        return digest

    def create_request(self, model: str, modelfile: Modelfile, base_dir: Path) -> dict[str, Any]:
        """The ``/api/create`` body for a Modelfile, uploading its local files first.

        Every file is checked by the same rules as an in-process create (``modelfile.files``)
        before anything is sent: FROM a regular GGUF file, ADAPTER a regular GGUF file
        inside the Modelfile's directory. A FROM that is neither such a file, a digest nor a
        valid model name is refused here, as in-process, and never sent."""
        spec = interpret(modelfile)
        body: dict[str, Any] = {"model": model}
        base = spec.base
        to_send: list[tuple[str, str, BinaryIO]] = []  # (field, name, file): all checked before any upload
        adapters: dict[str, str] = {}
        try:
            if is_digest(base.value):
                body["files"] = {"model.gguf": normalize_digest(base.value)}
            else:
                checkpoint = checkpoint_dir(base.value, base_dir)
                f = convert_checkpoint(checkpoint, base) if checkpoint is not None else open_model_file(base.value, base_dir)
                if f is not None:
                    to_send.append(("files", f"{checkpoint.name}.gguf" if checkpoint is not None else Path(base.value).name, f))
                elif parse_name(base.value).is_valid():
                    body["from"] = base.value
                else:
                    raise ModelfileError(f"FROM {base.value!r}: {FROM_NOT_FOUND}", base.line)
            for command in spec.adapters:
                if is_digest(command.value):
                    adapters[command.value] = normalize_digest(command.value)
                else:
                    to_send.append(("adapters", Path(command.value).name, open_adapter_file(command, base_dir)))
            for field, name, f in to_send:
                digest = self._upload(f, name)
                if field == "files":
                    body["files"] = {name: digest}
                else:
                    adapters[name] = digest
        finally:
            for _, _, f in to_send:
                f.close()
        if adapters:
            body["adapters"] = adapters
        if spec.template is not None:
            body["template"] = spec.template
        if spec.system is not None:
            body["system"] = spec.system
        if spec.licenses:
            body["license"] = list(spec.licenses)
        if spec.parameters:
            body["parameters"] = dict(spec.parameters)
        if spec.messages:
            body["messages"] = [dict(m) for m in spec.messages]
        return body

    def create(self, model: str, modelfile: Modelfile, base_dir: Path, report: Report,
               quantize: str | None = None) -> None:
        body = self.create_request(model, modelfile, base_dir)
        if quantize:
            body["quantize"] = quantize
        for event in self._stream("/api/create", body):
            report(event)

    # -- generation --------------------------------------------------------------

    def chat(self, request: dict[str, Any]) -> HttpStream:
        return self._stream("/api/chat", request)

    def embed(self, model: str, inputs: list[str]) -> list[list[float]]:
        return self._call("POST", "/api/embed", {"model": model, "input": inputs})["embeddings"]

    def generate(self, request: dict[str, Any]) -> HttpStream:
        return self._stream("/api/generate", request)

    def close(self) -> None:
        self._client.close()

"""The client side of ollama's registry protocol (Docker distribution v2, as ollama speaks it).

A model ``host/namespace/model:tag`` lives at ``https://host/v2/namespace/model/``:

* ``GET  manifests/<tag>`` with ``Accept: application/vnd.docker.distribution.manifest.v2+json``;
* ``GET  blobs/<digest>`` with ``Range: bytes=a-b`` (206 and ``Content-Range``), ``HEAD`` to ask
  whether the registry has a blob;
* pushes: ``POST blobs/uploads/`` (202 and a ``Location``), ``PATCH <location>`` with
  ``Content-Range: a-b``, ``PUT <location>?digest=<digest>``, then ``PUT manifests/<tag>``.

``--insecure`` (``"insecure": true``) talks plain http, as ollama does; a name written
``http://...`` needs it. A 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``
fetches a token from the realm (``GET realm?service=&scope=``, JSON ``{"token": ...}``) and retries
once; a realm on another host than the registry's is refused, so no credential travels to a third
party, and the token is only ever sent to the registry's own host. Hugging Face names
(``hf.co/<user>/<repo>:<quant>``) go to Hugging Face's registry with ``HF_TOKEN`` (when set) as
the bearer token, for private repositories.

Redirects (registries send blobs to a CDN) are followed here, not by httpx: at most
``MAX_REDIRECTS``, only to http or https (never ``file://`` or another scheme), never from https
down to http unless insecure, and without the ``Authorization`` header once they leave the
registry's host. Every answer is bounded before it is read: manifests (``MAX_MANIFEST_BYTES``,
nesting ``MAX_JSON_DEPTH``), token and error bodies; a compressed body is inflated here, never past
its bound, so a gzip bomb stops there. Blobs are asked for uncompressed (``Accept-Encoding:
identity``), and one sent compressed all the same is refused.
"""

from __future__ import annotations

from contextlib import closing

import contextlib
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from kettle import config
from kettle.errors import ModelNotFound, RegistryError, StoreError
from kettle.store.manifest import MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES, Manifest, normalize_digest
from kettle.store.names import ModelName, is_hugging_face

MAX_REDIRECTS = 10  # ollama's limit for a blob's redirects
MAX_JSON_DEPTH = 32  # a manifest nests 3 deep; anything deeper is not one
MAX_ERROR_BYTES = 8 << 10  # an error body: only its first bytes are read, and 300 characters shown
MAX_TOKEN_BYTES = 64 << 10  # a token response
MAX_TOKEN_CHARS = 16 << 10
SHOWN_CHARS = 300
CONNECT_TIMEOUT_S = 15.0
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "kettle (ollama registry protocol)"

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def stall_timeout() -> float:
    """``KETTLE_STALL_TIMEOUT``: seconds without a byte before a transfer counts as stalled."""
    value = config.get_int("KETTLE_STALL_TIMEOUT")
    return float(value) if value > 0 else 30.0


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text (strings skipped); linear, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_json(data: bytes, where: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from a registry, refused (RegistryError) when malformed or nested past ``max_depth``."""
    if json_depth(data) > max_depth:
        raise RegistryError(f"{where}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise RegistryError(f"{where}: not valid JSON ({e})") from None


@dataclass(frozen=True)
class Challenge:
    """A ``WWW-Authenticate: Bearer`` challenge."""

    realm: str
    service: str
    scope: str


def parse_challenge(header: str) -> Challenge | None:
    """The Bearer challenge in a ``WWW-Authenticate`` value, or None when there is none."""
    if not header or not header[:7].lower() == "bearer ":
        return None
    params = {k.lower(): v for k, v in _CHALLENGE_PARAM.findall(header[:4096])}
    if not params.get("realm"):
        return None
    return Challenge(params["realm"], params.get("service", ""), params.get("scope", ""))


def _host_of(url: str) -> str:
    return (urlsplit(url).netloc.rpartition("@")[2]).lower()


def join_url(resp: httpx.Response, location: str, where: str) -> str:
    """A ``Location`` header resolved against the response's URL; RegistryError when malformed."""
    try:
        return str(resp.url.join(location))
    except (httpx.InvalidURL, ValueError):
        raise RegistryError(f"{where}: answered with a malformed Location {location[:200]!r}") from None


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


class RegistryClient:
    """One registry's ``/v2/<namespace>/<model>/`` endpoints, for the model ``name``.

    ``close()`` when done (or use it as a context manager). Responses from ``send`` are
    streamed: the caller reads them (bounded) and closes them.
    """

    def __init__(self, name: ModelName, *, insecure: bool = False, stall_s: float | None = None) -> None:
        name.filepath_parts()  # StoreError for an invalid name, before any URL is built from it
        self.name = name
        self.insecure = insecure
        self.host = name.host.lower()
        self.base = f"{'http' if insecure else 'https'}://{name.host}"
        self.repo_url = f"{self.base}/v2/{name.namespace}/{name.model}"
        self.stall_s = stall_s if stall_s is not None else stall_timeout()
        token = os.environ.get("HF_TOKEN", "").strip() if is_hugging_face(name) else ""
        self._token = token or None
        timeout = httpx.Timeout(self.stall_s, connect=CONNECT_TIMEOUT_S)
        self._http = httpx.Client(follow_redirects=False, timeout=timeout, headers={"User-Agent": USER_AGENT})

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def where(self) -> str:
        return f"registry {self.host}"

    # -- requests ------------------------------------------------------------------

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
             content: Any = None, params: dict[str, str] | None = None) -> httpx.Response:
        """``method url``, with the token flow and the redirect rules; a streamed response.

        ``content`` is bytes or a function returning a fresh iterable of bytes (called again
        when the request is repeated after a 401). Network errors propagate as httpx errors."""
        for attempt in range(2):
            resp = self._follow(method, url, headers or {}, content, params)
            if resp.status_code != 401 or attempt == 1:
                return resp
            challenge = parse_challenge(resp.headers.get("www-authenticate", ""))
            resp.close()
            if challenge is None:
                raise RegistryError(f"{self.where()}: unauthorized (401) and no Bearer challenge to answer", 401)
            self._token = self._fetch_token(challenge)
        raise AssertionError("unreachable")

    def _follow(self, method: str, url: str, headers: dict[str, str], content: Any,
                params: dict[str, str] | None) -> httpx.Response:
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if self._token is not None and _host_of(url) == self.host:
                sent["Authorization"] = f"Bearer {self._token}"
            body = content() if callable(content) else content
            request = self._http.build_request(method, url, headers=sent, content=body, params=params)
            resp = self._http.send(request, stream=True)
            location = resp.headers.get("location")
            if resp.status_code not in REDIRECT_CODES or not location:
                return resp
            resp.close()
            target = join_url(resp, location, self.where())
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ("http", "https"):
                raise RegistryError(f"{self.where()}: refused a redirect to {scheme or 'a relative'}:// "
                                    f"(only http and https are followed)")
            if scheme == "http" and urlsplit(url).scheme == "https" and not self.insecure:
                raise RegistryError(f"{self.where()}: refused a redirect from https down to plain http "
                                    f"(pass --insecure to allow it)")
            if resp.status_code == 303:
                method, content = "GET", None
            url, params = target, None
        raise RegistryError(f"{self.where()}: more than {MAX_REDIRECTS} redirects; the registry is misconfigured")

    def _fetch_token(self, challenge: Challenge) -> str:
        realm = urlsplit(challenge.realm)
        if realm.scheme not in ("http", "https") or (realm.scheme == "http" and not self.insecure):
            raise RegistryError(f"{self.where()}: refused the token realm {_shown(challenge.realm)!r} "
                                f"(https only, or http with --insecure)")
        if realm.netloc.lower() != self.host:
            raise RegistryError(
                f"{self.where()}: the token realm is on another host ({realm.netloc!r}); kettle sends "
                f"credentials only to the registry that asked for them", 401)
        params = {k: v for k, v in (("service", challenge.service), ("scope", challenge.scope)) if v}
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            resp = self._http.send(self._http.build_request("GET", challenge.realm, params=params, headers=headers),
                                   stream=True)
        except httpx.HTTPError as e:
            raise RegistryError(f"{self.where()}: cannot get a token from its realm: {e}") from None
        with closing(resp):
            if resp.status_code != 200:
                raise self.error_of(resp, "the token request")
            body = parse_json(read_limited(resp, MAX_TOKEN_BYTES, f"{self.where()}: token response"),
                              f"{self.where()}: token response")
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not token.isprintable():
            raise RegistryError(f"{self.where()}: the token response holds no usable token")
        return token

    def error_of(self, resp: httpx.Response, what: str) -> RegistryError:
        """A RegistryError for a failed answer, with the first bytes of its message."""
        try:
            data = read_limited(resp, MAX_ERROR_BYTES, what, truncate=True)
        except (httpx.HTTPError, RegistryError):
            data = b""
        message = _error_message(data)
        suffix = f": {message}" if message else ""
        return RegistryError(f"{self.where()}: {what} failed with {resp.status_code}{suffix}", resp.status_code)

    # -- pulls ---------------------------------------------------------------------

    @contextlib.contextmanager
    def network(self, what: str) -> Iterator[None]:
        """httpx's errors (no connection, a timeout) as RegistryError, naming ``what`` failed."""
        try:
            yield
        except httpx.HTTPError as e:
            raise RegistryError(f"cannot reach {self.where()} ({self.base}) while {what}: "
                                f"{_shown(str(e)) or type(e).__name__}") from None

    def manifest(self) -> tuple[Manifest, bytes]:
        """The manifest of ``name`` and its bytes: bounded, parsed, every digest checked (RegistryError)."""
        where = f"{self.where()}: manifest of {self.name.display()}"
        url = f"{self.repo_url}/manifests/{self.name.tag}"
        with self.network("pulling the manifest"), closing(self.send("GET", url, headers={"Accept": MANIFEST_MEDIA_TYPE})) as resp:
            if resp.status_code == 404:
                raise ModelNotFound(self.name.display(), f"the {self.where()} has no such model")
            if resp.status_code != 200:
                raise self.error_of(resp, f"pulling the manifest of {self.name.display()}")
            data = read_limited(resp, MAX_MANIFEST_BYTES, where)
        parse_json(data, where)  # the depth check, before Manifest parses it
        try:
            return Manifest.from_bytes(data, where), data
        except RegistryError:
            raise
        except StoreError as e:
            raise RegistryError(str(e)) from None

    def blob_url(self, digest: str) -> str:
        return f"{self.repo_url}/blobs/{normalize_digest(digest)}"

    def open_blob(self, digest: str, start: int, end: int) -> httpx.Response:
        """A streamed ``GET`` of bytes ``start..end`` (inclusive) of a blob."""
        headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"}
        return self.send("GET", self.blob_url(digest), headers=headers)

    def has_blob(self, digest: str) -> bool:
        with self.network("checking a blob"), closing(self.send("HEAD", self.blob_url(digest))) as resp:
            if resp.status_code == 200:
                return True
            if resp.status_code == 404:
                return False
            raise self.error_of(resp, f"checking blob {normalize_digest(digest)}")



def _error_message(data: bytes) -> str:
    """The message of a registry's error body: Docker's ``{"errors": [{"message"}]}``, ollama's
    ``{"error": ...}``, or the text itself; at most ``SHOWN_CHARS`` characters."""
    try:
        body = json.loads(data) if json_depth(data) <= MAX_JSON_DEPTH else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        body = None
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return _shown(str(errors[0].get("message") or errors[0].get("code") or ""))
        if isinstance(body.get("error"), str):
            return _shown(body["error"])
    return _shown(data.decode("utf-8", "replace"))


def _decoder(resp: httpx.Response, where: str) -> Any:
    """A zlib decompressor for the body's Content-Encoding (None: identity); others are refused."""
    encoding = resp.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise RegistryError(f"{where}: unsupported Content-Encoding {_shown(encoding)!r}")


def read_limited(resp: httpx.Response, limit: int, where: str, *, truncate: bool = False) -> bytes:
    """At most ``limit`` decoded bytes of a streamed body. Larger: RegistryError (or the first
    ``limit`` bytes with ``truncate``). A declared ``Content-Length`` over the limit is refused
    unread; a compressed body is inflated here, never past the limit (a gzip bomb stops there)."""
    decoder = _decoder(resp, where)
    declared = resp.headers.get("content-length", "")
    if not truncate and decoder is None and declared.isdigit() and int(declared) > limit:
        raise RegistryError(f"{where}: {int(declared)} bytes, more than the {limit} kettle accepts")
    out = bytearray()
    try:
        for raw in resp.iter_raw():
            if decoder is None:
                out += raw
            else:
                out += decoder.decompress(raw, limit + 1 - len(out))
                if decoder.unconsumed_tail:  # more output than the room left
                    out += b"\0"
            if len(out) > limit:
                if truncate:
                    return bytes(out[:limit])
                raise RegistryError(f"{where}: more than the {limit} bytes kettle accepts")
    except zlib.error as e:
        raise RegistryError(f"{where}: the compressed body is corrupt ({e})") from None
    return bytes(out)


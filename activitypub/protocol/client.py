"""The guarded HTTP client: the only way the federation talks to other servers.

One `GuardedClient` is built in the app's lifespan and passed to whoever fetches or delivers. Every call:
- goes only to `https://` URLs (`http://` too with `allow_private`, for tests and local labs);
- connects only to addresses `addresses.check_address` accepts, checked on the connection itself (`GuardedBackend`);
- follows at most `max_redirects` redirects by hand, each target checked again and signed again by `auth`;
- finishes within `deadline` seconds in total — resolving, connecting, every redirect and reading the body;
- reads at most `max_bytes` of an answer (decompressed), refusing a larger one before or while reading it.
Callers see `FetchError` (or its subclass `AddressRefused`) and never a raw httpx error.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, NamedTuple, Self

import httpcore
import httpx

from activitypub.protocol.addresses import AddressRefused, FetchError, GuardedBackend, Resolver, resolve_host
from activitypub.protocol.deferral import deferred_answers

__all__ = [
    "ACTIVITY_ACCEPT",
    "ACTIVITY_TYPES",
    "JSON_ACCEPT",
    "JSON_TYPES",
    "AddressRefused",
    "DeliveryResult",
    "FetchError",
    "Fetched",
    "FetchedDocument",
    "GuardedClient",
    "parse_json_object",
    "parse_retry_after",
]

AS_PROFILE = "https://www.w3.org/ns/activitystreams"
ACTIVITY_ACCEPT = f'application/activity+json, application/ld+json; profile="{AS_PROFILE}"'
ACTIVITY_TYPES = frozenset({"application/activity+json", "application/ld+json"})
JSON_ACCEPT = "application/jrd+json, application/json"
JSON_TYPES = frozenset({"application/jrd+json", "application/json"})
"""For WebFinger and NodeInfo: `get_json(url, accept=JSON_ACCEPT, accept_types=JSON_TYPES)`."""
MAX_JSON_DEPTH = 64
EXCERPT_BYTES = 4096

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_PROFILE = re.compile(r'(?:^|;)\s*profile\s*=\s*(?:"([^"]*)"|([^;\s]*))', re.IGNORECASE)


class Fetched(NamedTuple):
    """A successful GET: the URL finally answered (after redirects), its headers and its (decoded) body."""

    url: str
    headers: httpx.Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class FetchedDocument:
    """A JSON object and the URL it was finally served from."""

    url: str
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """A POST's answer, whatever its status: the delivery worker decides what a 4xx, 5xx or 3xx means."""

    status: int
    retry_after: float | None
    body_excerpt: str


class GuardedClient:
    """Keep-alive pooled, guarded HTTP for the federation. Build once, share, `aclose()` at shutdown."""

    def __init__(
        self,
        *,
        allow_private: bool,
        user_agent: str,
        resolver: Resolver | None = None,
        deadline: float = 10.0,
        max_bytes: int = 1_000_000,
        max_redirects: int = 3,
        max_connections: int = 100,
    ) -> None:
        self._schemes = frozenset({"https", "http"} if allow_private else {"https"})
        self._deadline = deadline
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        backend = GuardedBackend(allow_private=allow_private, resolver=resolver or resolve_host)
        self._http = httpx.AsyncClient(
            transport=_GuardedTransport(backend, max_connections=max_connections),
            # Only gzip, which `_read_body` decompresses within the cap; httpx would decode anything it knows.
            headers={"User-Agent": user_agent, "Accept-Encoding": "gzip"},
            # A cookie jar shared by every delivery would carry one peer's state into the next request.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            timeout=httpx.Timeout(deadline),
            follow_redirects=False,
            trust_env=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(
        self,
        url: str,
        *,
        auth: httpx.Auth | None = None,
        accept: str = ACTIVITY_ACCEPT,
        accept_types: Collection[str] | None = ACTIVITY_TYPES,
    ) -> Fetched:
        """GET `url`; the answer must be 2xx and, unless `accept_types` is None, of one of those media types."""
        async with self._bounded():
            return await self._get(url, auth, accept, accept_types)

    async def get_json(
        self,
        url: str,
        *,
        auth: httpx.Auth | None = None,
        accept: str = ACTIVITY_ACCEPT,
        accept_types: Collection[str] | None = ACTIVITY_TYPES,
    ) -> FetchedDocument:
        """GET `url` and parse its answer, which must be a JSON object nested at most 64 levels deep."""
        deferred = deferred_answers()
        if deferred is not None:
            types = tuple(sorted(accept_types)) if accept_types is not None else None
            again = lambda: self.get_json(url, auth=auth, accept=accept, accept_types=accept_types)  # noqa: E731
            answer: FetchedDocument = deferred.answer(("get_json", url, accept, types), again)
            return answer
        async with self._bounded():
            return await self._get_json(url, auth, accept, accept_types)

    async def fetch_object(self, url: str, auth: httpx.Auth | None = None) -> FetchedDocument:
        """GET an ActivityStreams object, accepted only from the origin its `id` names.

        A document whose `id` has the origin of the URL that finally served it (after redirects) is accepted.
        Otherwise the object is fetched again from its `id`, and that copy is accepted only if it names the same
        `id` and was served from that origin: anyone can serve a document claiming someone else's id, only the
        id's origin may vouch for it (Mastodon's CVE-2024-23832).
        """
        deferred = deferred_answers()
        if deferred is not None:
            answer: FetchedDocument = deferred.answer(("object", url), lambda: self.fetch_object(url, auth))
            return answer
        async with self._bounded():
            first = await self._get_json(url, auth, ACTIVITY_ACCEPT, ACTIVITY_TYPES)
            claimed = _document_id(first)
            if _same_origin(claimed, first.url):
                return first
            second = await self._get_json(claimed, auth, ACTIVITY_ACCEPT, ACTIVITY_TYPES)
            if _document_id(second) == claimed and _same_origin(claimed, second.url):
                return second
            raise FetchError(f"{first.url} served a document with id {claimed}, which {claimed} does not confirm")

    async def post(
        self, url: str, body: bytes, *, auth: httpx.Auth | None = None, headers: Mapping[str, str] | None = None
    ) -> DeliveryResult:
        """POST `body` as `application/activity+json` (unless `headers` says otherwise); redirects are not followed."""
        async with self._bounded():
            target = self._checked_url(url)
            merged = httpx.Headers({"Content-Type": "application/activity+json"})
            merged.update(headers or {})
            request = self._http.build_request("POST", target, content=body, headers=merged)
            async with self._send(request, auth) as response:
                excerpt = await _read_body(response, EXCERPT_BYTES, truncate=True)
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return DeliveryResult(response.status_code, retry_after, excerpt.decode("utf-8", "replace"))

    async def _get(
        self, url: str, auth: httpx.Auth | None, accept: str, accept_types: Collection[str] | None
    ) -> Fetched:
        target = self._checked_url(url)
        for _ in range(self._max_redirects + 1):
            request = self._http.build_request("GET", target, headers={"Accept": accept})
            async with self._send(request, auth) as response:
                status = response.status_code
                if status in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError("redirect without a Location", status)
                    target = self._checked_url(location, base=target)
                    continue
                if not response.is_success:
                    raise FetchError("answered with an error status", status)
                content_type = response.headers.get("content-type", "")
                if accept_types is not None and not _media_type_accepted(content_type, accept_types):
                    raise FetchError(f"unexpected media type {content_type!r}", status)
                body = await _read_body(response, self._max_bytes, truncate=False)
                return Fetched(str(target), response.headers, body)
        raise FetchError(f"more than {self._max_redirects} redirects")

    async def _get_json(
        self, url: str, auth: httpx.Auth | None, accept: str, accept_types: Collection[str] | None
    ) -> FetchedDocument:
        fetched = await self._get(url, auth, accept, accept_types)
        try:
            return FetchedDocument(fetched.url, parse_json_object(fetched.body))
        except ValueError as exc:
            raise FetchError(f"invalid JSON from {fetched.url}: {exc}") from None

    def _checked_url(self, url: str | httpx.URL, base: httpx.URL | None = None) -> httpx.URL:
        try:
            parsed = base.join(url) if base is not None else httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise FetchError(f"invalid URL {str(url)!r}") from None
        if parsed.scheme not in self._schemes:
            allowed = " or ".join(f"{scheme}://" for scheme in sorted(self._schemes))
            raise AddressRefused(f"refused {parsed.scheme or 'relative'} URL {str(url)!r}: only {allowed} is allowed")
        if not parsed.host:
            raise AddressRefused(f"URL without a host {str(url)!r}")
        if parsed.userinfo:
            raise AddressRefused("URL carries credentials")
        return parsed

    @asynccontextmanager
    async def _send(self, request: httpx.Request, auth: httpx.Auth | None) -> AsyncIterator[httpx.Response]:
        if auth is not None and auth.requires_response_body:
            # httpx would read such an answer whole, past the size cap.
            raise TypeError("an auth that reads response bodies cannot be used with the guarded client")
        response = await self._http.send(request, auth=auth, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    @asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """The whole call within the deadline, and every failure as a FetchError."""
        try:
            async with asyncio.timeout(self._deadline):
                yield
        except TimeoutError:
            raise FetchError(f"deadline of {self._deadline:g} s exceeded") from None
        except httpx.TimeoutException as exc:
            raise FetchError(f"timed out: {exc}") from exc
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from exc


def parse_json_object(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object nested at most `max_depth` levels; anything else is a ValueError.

    The nesting is measured before parsing, so a thousand-level document is refused without recursing into it.
    """
    text = body.decode("utf-8-sig")
    if text.count("[") + text.count("{") > max_depth:
        depth = 0
        for token in _JSON_TOKENS.finditer(text):
            opener = token.group()[0]
            if opener in "[{":
                depth += 1
                if depth > max_depth:
                    raise ValueError(f"nested deeper than {max_depth} levels")
            elif opener in "]}":
                depth -= 1
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__} where an object was expected")
    return value


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay in seconds or HTTP date); None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over an httpcore pool whose every connection is made by `GuardedBackend`.

    httpx's transport does the delicate work — turning httpx requests into httpcore ones, mapping httpcore errors,
    streaming bodies — but takes no network backend; httpcore's pool does. Copying that work into our own transport
    would copy httpx's private helpers too, so this keeps httpx's and replaces its pool. The one private name relied
    on, `_pool`, is checked here: an httpx that renames it fails when the client is built, not silently.
    """

    def __init__(self, backend: GuardedBackend, *, max_connections: int) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx.AsyncHTTPTransport keeps its pool elsewhere; GuardedClient needs updating")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            network_backend=backend,
        )


async def _read_body(response: httpx.Response, limit: int, *, truncate: bool) -> bytes:
    """At most `limit` decoded bytes of the answer; beyond that an error or, with `truncate`, the first `limit`."""
    if not truncate:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(f"answer of {declared} bytes is over the {limit}-byte cap", response.status_code)
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        if truncate:
            return b""
        raise FetchError(f"unsupported content encoding {encoding!r}", response.status_code)
    # Decompressing at most one byte past the room left bounds memory against compression bombs.
    gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding != "identity" else None
    body = bytearray()
    async for raw in response.aiter_raw():
        try:
            body += gunzip.decompress(raw, limit - len(body) + 1) if gunzip else raw
        except zlib.error:
            if truncate:
                break
            raise FetchError("answer is not valid gzip", response.status_code) from None
        if len(body) > limit:
            if truncate:
                break
            raise FetchError(f"answer is over the {limit}-byte cap", response.status_code)
    return bytes(body[:limit])


def _media_type_accepted(content_type: str, accepted: Collection[str]) -> bool:
    media_type, _, parameters = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type not in accepted:
        return False
    if media_type != "application/ld+json":
        return True
    profile = _PROFILE.search(parameters)
    return profile is None or AS_PROFILE in (profile.group(1) or profile.group(2) or "").split()


def _document_id(fetched: FetchedDocument) -> str:
    claimed = fetched.document.get("id")
    if not isinstance(claimed, str) or not claimed:
        raise FetchError(f"the document at {fetched.url} has no id")
    return claimed


def _same_origin(first: str, second: str) -> bool:
    try:
        a, b = httpx.URL(first), httpx.URL(second)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    if not a.host or a.scheme not in _DEFAULT_PORTS:
        return False
    return (a.scheme, a.host, a.port or _DEFAULT_PORTS[a.scheme]) == (
        b.scheme,
        b.host,
        b.port or _DEFAULT_PORTS.get(b.scheme),
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")

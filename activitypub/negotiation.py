"""How a federation endpoint answers: Accept parsing (RFC 9110 §12.5.1, q-values and specificity), the
ActivityStreams JSON response, its 404, the authorized-fetch gate every JSON GET passes, and the cache of
rendered documents.

One address serves two audiences: browsers get the forum's HTML page, peers asking for an
ActivityStreams type get JSON, and both answers say `Vary: Accept` so no cache hands one to the other.

Rendered documents live in the forum's page cache, tagged like the pages (`t:ID`, `c:ID`) so the
changes that make a page stale make its document stale too, in every process.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from forum.cache import CachedPage
from forum.web.context import forum_context

AS_PROFILE = "https://www.w3.org/ns/activitystreams"
ACTIVITY_JSON = "application/activity+json"
LD_JSON = f'application/ld+json; profile="{AS_PROFILE}"'
HTML = "text/html"
# What a peer may ask for; plain JSON too, which some fetchers and tools send.
ACTIVITY_TYPES = (ACTIVITY_JSON, LD_JSON, "application/json")
# Offered in this order: on a tie (`*/*`, or no Accept at all) the first one wins.
HTML_FIRST = (HTML, *ACTIVITY_TYPES)
JSON_FIRST = (*ACTIVITY_TYPES, HTML)
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    params: dict[str, str]
    q: float

    def matches(self, offer: MediaRange) -> bool:
        if self.type not in ("*", offer.type) or self.subtype not in ("*", offer.subtype):
            return False
        # Only a profile tells types apart (charset and the like do not); a JSON-LD profile may
        # list several URIs, space-separated, and one of them must be the offer's.
        wanted = self.params.get("profile")
        return wanted is None or offer.params.get("profile", "") in wanted.split()

    @property
    def specificity(self) -> tuple[bool, bool, bool]:
        return (self.type != "*", self.subtype != "*", "profile" in self.params)


def parse_media_range(text: str) -> MediaRange | None:
    """One element of an Accept header, or None when it is not `type/subtype[; params]`."""
    kind, *raw_params = text.split(";")
    main, slash, sub = kind.strip().lower().partition("/")
    if not slash or not main or not sub:
        return None
    params: dict[str, str] = {}
    q = 1.0
    for raw in raw_params:
        name, equals, value = raw.strip().partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if not equals or not name:
            continue
        if name == "q":
            try:
                q = min(max(float(value), 0.0), 1.0)
            except ValueError:
                q = 0.0
        else:
            params[name] = value
    return MediaRange(main, sub, params, q)


def choose(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offer the client prefers, or None when it accepts none of them.

    Each offer takes the q of the most specific range that matches it; the highest q wins, and the
    earlier offer wins a tie. A missing or empty Accept header accepts anything.
    """
    return _choose(accept, tuple(offers))


# Peers and browsers send a handful of distinct Accept headers, again and again: each is read once.
@functools.lru_cache(maxsize=256)
def _choose(accept: str | None, offers: tuple[str, ...]) -> str | None:
    ranges = [r for r in (parse_media_range(part) for part in (accept or "*/*").split(",")) if r is not None]
    if not ranges:
        ranges = [MediaRange("*", "*", {}, 1.0)]
    best: str | None = None
    best_q = 0.0
    for offer in offers:
        parsed = parse_media_range(offer)
        assert parsed is not None
        matching = [r for r in ranges if r.matches(parsed)]
        if not matching:
            continue
        q = max(matching, key=lambda r: r.specificity).q
        if q > best_q:
            best, best_q = offer, q
    return best


def activity_type(request: Request, offers: Sequence[str] = HTML_FIRST) -> str | None:
    """The ActivityStreams media type to answer with, or None when this request should get HTML."""
    chosen = choose(request.headers.get("accept"), offers)
    if chosen is None or chosen == HTML:
        return None
    return LD_JSON if chosen == LD_JSON else ACTIVITY_JSON


def activity_response(
    document: dict[str, Any], media_type: str = ACTIVITY_JSON, status: int = 200, *, request: Request | None = None
) -> Response:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=media_type, headers=_headers(request))


def _headers(request: Request | None) -> dict[str, str]:
    headers = {"Vary": "Accept"}
    if request is not None and "authorized_fetch" in forum_context(request).extra:
        # Under authorized fetch, what a signed request is answered is for that peer: a shared cache must not
        # hand it to the next asker (a signature is not an `Authorization` header, which caches know to skip).
        headers["Cache-Control"] = "private"
    return headers


def cached_document(request: Request, media_type: str) -> Response | None:
    """The document rendered earlier for this address and media type, while nothing made it stale."""
    page = forum_context(request).pages.get(("ap", _address(request), media_type))
    if page is None:
        return None
    headers = {**_headers(request), "ETag": page.etag}
    if request.headers.get("if-none-match") == page.etag:
        return Response(status_code=304, headers=headers)
    return Response(page.body, media_type=page.media_type, headers=headers)


def cache_document(request: Request, media_type: str, document: dict[str, Any], tags: Iterable[str]) -> Response:
    """Answer `document` and keep it until one of `tags` is marked stale."""
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    page = CachedPage(body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"', media_type)
    forum_context(request).pages.put(("ap", _address(request), media_type), page, tags)
    return Response(body, media_type=media_type, headers={**_headers(request), "ETag": page.etag})


def _address(request: Request) -> str:
    """A collection's pages differ by their query (`?page=2`); nothing else reads one. Read from the ASGI
    scope: `request.url` builds and parses a whole URL, on every request the page cache answers."""
    scope = request.scope
    path: str = scope.get("root_path", "") + scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def not_found(request: Request, detail: str = "There is nothing at this address.") -> Response:
    body = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": detail,
            "request_id": getattr(request.state, "request_id", None)}  # fmt: skip
    return Response(json.dumps(body).encode(), 404, media_type=PROBLEM_JSON, headers={"Vary": "Accept"})


def add_vary_accept(response: Response) -> Response:
    vary = response.headers.get("vary")
    if vary is None:
        response.headers["Vary"] = "Accept"
    elif "accept" not in [part.strip().lower() for part in vary.split(",")]:
        response.headers["Vary"] = f"{vary}, Accept"
    return response


async def require_signed_fetch(request: Request) -> None:
    """The authorized-fetch gate, called by every ActivityStreams GET route before its page cache: nothing until
    a verifier is plugged in as `extra["authorized_fetch"]` (`activitypub.fetch_auth`, with
    `FORUM_FEDERATION_AUTHORIZED_FETCH=1`), which then raises an HTTPException 401 for a request without a valid
    signature and leaves its signer on `request.state.signer`."""
    check = forum_context(request).extra.get("authorized_fetch")
    if callable(check):
        await check(request)

"""Who signed a federation request, for the inboxes (POST) and authorized fetch (GET) alike.

The key a request names is looked up in a small in-memory cache of keys that verified lately, then in the
database, then fetched from its owner (through the resolver, signed by the instance actor), and the
request's HTTP signature is verified against it with `protocol.signatures.verify_request`. A signature
that does not match the key we hold may mean the key rotated: the key leaves the cache and is fetched
again, at most once a minute per key, so that forged requests naming a peer's key never make us hammer
that peer's server. One `Signers` lives on the federation runtime; its notes are per process.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from activitypub.audiences import domain_of
from activitypub.protocol.client import FetchError
from activitypub.protocol.jsonld import DocumentError
from activitypub.protocol.signatures import SignatureError, verify_request
from activitypub.resolver import ActivityPubResolver, ResolveError
from forum.models import Actor

__all__ = ["KEYS_KEPT", "KEY_REFETCH_EVERY", "SignatureRefused", "Signer", "Signers", "is_our_host", "request_target"]

KEY_REFETCH_EVERY = 60.0
# Keys kept verified in memory: a busy forum hears from a few thousand actors' keys an hour.
KEYS_KEPT = 4096
MAX_NOTES = 10_000
# Built once: every request from an actor not met lately reads its key's owner.
_KEY_OWNER = select(Actor).where(Actor.key_id == bindparam("key_id"))


class SignatureRefused(Exception):
    """A request whose signature cannot be believed; `reason` says why, in English, for the peer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Signer:
    """The verified signer of a request: its key and the key's owner."""

    key_id: str
    ap_id: str
    public_key_pem: str

    @property
    def domain(self) -> str:
        """The signer's host (its key's and its actor's: the resolver stores no actor whose key is elsewhere)."""
        return domain_of(self.key_id)


class Signers:
    """Verifies requests' signatures; keeps the last `keep` keys that verified (least recently used go first)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        resolver: ActivityPubResolver,
        *,
        keep: int = KEYS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._resolver = resolver
        self._keep = keep
        self._clock = clock
        self._keys: OrderedDict[str, Signer] = OrderedDict()
        self._refetched: dict[str, float] = {}

    def remembers(self, key_id: str) -> bool:
        """Whether verifying a request signed with this key costs no database read (nor fetch)."""
        return key_id in self._keys

    async def verify(
        self, request: Request, body: bytes, key_id: str, fields: Mapping[str, str] | None = None
    ) -> Signer:
        """The signer of `request` (whose body is `body`, whose signature names `key_id`), or SignatureRefused.
        `fields`: the request's headers, if already read (`signature_claims.normalize_fields`)."""
        headers = request.headers if fields is None else fields
        failed_pem: str | None = None
        reason = ""
        cached = self._keys.get(key_id)
        if cached is not None:
            try:
                return self._remember(_check(request, headers, body, cached))
            except SignatureRefused as refusal:
                if not _may_be_rotated(refusal.reason):
                    raise
                self._keys.pop(key_id, None)
                failed_pem, reason = cached.public_key_pem, refusal.reason
        for refresh in (False, True):
            if refresh:
                now = self._clock()
                if now - self._refetched.get(key_id, -KEY_REFETCH_EVERY) < KEY_REFETCH_EVERY:
                    raise SignatureRefused(reason)
                if len(self._refetched) > MAX_NOTES:
                    self._refetched.clear()
                self._refetched[key_id] = now
            try:
                owner = await self.owner(key_id, refresh=refresh)
            except (ResolveError, FetchError, DocumentError) as error:
                raise SignatureRefused(f"the signing key could not be fetched: {error}") from None
            assert owner.public_key_pem is not None
            signer = Signer(key_id, owner.ap_id, owner.public_key_pem)
            if not refresh and signer.public_key_pem == failed_pem:
                continue  # the stored key is the one that just failed: only a fresh copy can help
            try:
                return self._remember(_check(request, headers, body, signer))
            except SignatureRefused as refusal:
                reason = refusal.reason
                if refresh or not _may_be_rotated(reason):
                    raise
        raise AssertionError("unreachable")

    async def owner(self, key_id: str, *, refresh: bool = False) -> Actor:
        """The owner of a key, stored or fetched, without a pooled connection waiting on the peer: a slow key
        server would otherwise hold one for the client's whole deadline, and a few of them stall the forum."""
        if not refresh:
            async with self._sessions() as session:
                known = await session.scalar(_KEY_OWNER, {"key_id": key_id})
            if known is not None:
                return known
        # A refreshing key_owner fetches before its session first touches the database.
        try:
            async with self._sessions() as session, session.begin():
                return await self._resolver.key_owner(session, key_id, refresh=True)
        except IntegrityError:
            # Another request from the same new actor stored it meanwhile: theirs is the same record.
            async with self._sessions() as session:
                stored = await session.scalar(_KEY_OWNER, {"key_id": key_id})
            if stored is None:
                raise
            return stored

    def _remember(self, signer: Signer) -> Signer:
        self._keys[signer.key_id] = signer
        self._keys.move_to_end(signer.key_id)
        while len(self._keys) > self._keep:
            self._keys.popitem(last=False)
        return signer


def request_target(request: Request) -> str:
    """The path and query as received: what `(request-target)` and `@path` sign. Read from the ASGI scope:
    `request.url` builds and parses a whole URL, a tenth of an inbox request's time."""
    scope = request.scope
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("root_path", "") + scope["path"]
    return f"{path}?{query}" if query else path


def is_our_host(host: str, base_url: str) -> bool:
    """Whether a Host header names this forum (case and the scheme's default port aside)."""
    scheme, _, ours = base_url.lower().partition("://")
    default = ":443" if scheme == "https" else ":80"
    return host.strip().lower().removesuffix(default) == ours.removesuffix(default)


def _check(request: Request, headers: Mapping[str, str], body: bytes, signer: Signer) -> Signer:
    try:
        verify_request(
            request.method, request_target(request), headers, body, signer.public_key_pem,
            scheme=request.scope.get("scheme", "http"),  # not `request.url`: building it costs a tenth of a request
        )  # fmt: skip
    except SignatureError as error:
        raise SignatureRefused(error.reason) from None
    return signer


def _may_be_rotated(reason: str) -> bool:
    """Only a signature that does not match the key is worth a re-fetch (the key may have rotated)."""
    text = reason.lower()
    return "signature" in text and not any(word in text for word in ("digest", "date", "cover", "created", "old"))

"""The inboxes: verify the request, store the activity, answer `202`; the worker does the rest.

Refused with 401 (and logged): no signature, a signature that fails or does not cover what it must,
a key whose owner is not the activity's actor (unless the activity carries its author's own LD
signature — a forwarded activity), an actor on another host than the activity, or an object claiming
an id on another host than its author's. 401 rather than 403 because peers such as Fedify knock
first with RFC 9421 and fall back to draft-cavage only after a 4xx. Bad JSON is a 400; a flood from
one instance a 429. Nothing is stored for a refused request.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from activitypub.activity_origins import OriginRefused, check_origins, claims_of
from activitypub.audiences import domain_of
from activitypub.protocol.client import FetchError
from activitypub.protocol.jsonld import DocumentError, Glance, parse_json
from activitypub.protocol.ld_signatures import ld_signature_creator, verify_rsa_signature_2017
from activitypub.protocol.signature_claims import normalize_fields
from activitypub.protocol.signatures import SignatureError, signature_key_id
from activitypub.resolver import ResolveError
from activitypub.runtime import Federation, federation_of
from activitypub.signers import SignatureRefused, is_our_host
from forum.errors import RateLimited
from forum.ratelimit import address_key
from forum.web.context import forum_context
from forum.web.security import client_address

log = logging.getLogger(__name__)


class Refused(Exception):
    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


async def receive(request: Request) -> Response:
    federation = federation_of(request)
    with federation.pressure.answering_one():
        body = await request.body()
        try:
            activity, claims, signer = await _accept(request, federation, body)
        except Refused as refusal:
            log.info("inbox refused %s from %s: %s", request.url.path, request.client, refusal.reason)
            return JSONResponse(
                {"type": "about:blank", "title": "Refused", "status": refusal.status, "detail": refusal.reason},
                status_code=refusal.status,
                media_type="application/problem+json",
                headers={"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else None,
            )
        await store(federation, activity, claims, signer)
        return Response(status_code=202)


async def _accept(
    request: Request, federation: Federation, body: bytes
) -> tuple[dict[str, Any] | str, Glance, tuple[str, str]]:
    forum = forum_context(request)
    fields = normalize_fields(request.headers)  # read once: for the key id, the host, and the check
    try:
        key_id, form = signature_key_id(fields)
    except SignatureError as error:
        raise Refused(401, error.reason) from None
    host = fields.get("host", "")
    if not is_our_host(host, federation.settings.base_url):
        # A signature covers the Host it was made for: one made for another server, replayed here, is not ours.
        raise Refused(401, f"the request was signed for another host ({host[:100]!r}), not this one")
    limits = federation.settings.rate_limits
    # Before anything is verified, only the sender's address is known for sure: a request merely naming
    # another instance's key must not spend that instance's budget.
    try:
        forum.limiter.hit(
            "inbox-address", address_key(client_address(request, federation.settings.trusted_proxies)),
            limits.inbox_per_address, limits.inbox_window, "Too many activities.",
        )  # fmt: skip
    except RateLimited as limited:
        raise Refused(429, "too many activities from this address; slow down", limited.retry_after) from limited
    try:
        raw = parse_json(body)
        # Most activities are read by a glance at their plain terms: the worker normalizes what is kept, and checks
        # again that its reading claims what the glance did. Only the others are normalized before the answer.
        glanced = federation.glance(raw)
        normalized = None if glanced is not None else federation.normalize(raw)
        claims = check_origins(glanced or claims_of(normalized or {}), federation.settings.host.lower())
    except DocumentError as error:
        raise Refused(400, str(error)) from None
    except OriginRefused as refusal:
        raise Refused(refusal.status, refusal.reason) from None
    actor_id = claims.actor
    try:
        signer = await federation.signers.verify(request, body, key_id, fields)
    except SignatureRefused as refusal:
        raise Refused(401, refusal.reason) from None
    if signer.ap_id != actor_id and not await _forwarded_with_proof(federation, raw, actor_id):
        raise Refused(401, f"signed by {signer.ap_id} for an activity of {actor_id}")
    try:
        forum.limiter.hit(
            "inbox", domain_of(key_id), limits.inbox_per_instance, limits.inbox_window, "Too many activities."
        )
    except RateLimited as limited:
        raise Refused(429, "too many activities from this instance; slow down", limited.retry_after) from limited
    federation.peer_notes.note(domain_of(key_id), form)
    # Kept as received when glanced, in the very text received; normalized otherwise.
    return body.decode() if normalized is None else normalized, claims, (key_id, form)


async def _forwarded_with_proof(federation: Federation, activity: dict[str, Any], actor_id: str) -> bool:
    """A relayed activity is believed only with its author's own RsaSignature2017 (Mastodon's LD signature)."""
    creator = ld_signature_creator(activity)
    if creator is None or domain_of(creator) != domain_of(actor_id):
        return False
    try:
        author = await federation.signers.owner(creator)
    except (ResolveError, FetchError, DocumentError):
        return False
    return (
        author.ap_id == actor_id
        and author.public_key_pem is not None
        and verify_rsa_signature_2017(activity, author.public_key_pem)
    )


async def store(
    federation: Federation, activity: dict[str, Any] | str, claims: Glance, signer: tuple[str, str]
) -> None:
    """Keep the activity (its text as received, or normalized) for the worker, with the claims checked here; the
    same id received twice stays one row. Concurrent requests' activities are committed together (activitypub.intake):
    one commit for many."""
    await federation.received.store(
        federation.sessions,
        {
            "ap_id": claims.id,
            "type": claims.type[:32],
            "actor_ap_id": claims.actor,
            "signer_key_id": signer[0],
            "document": activity,
        },
    )


routes: list[BaseRoute] = [
    Route("/inbox", receive, methods=["POST"]),
    Route("/actor/inbox", receive, methods=["POST"]),
    Route("/c/{slug}/inbox", receive, methods=["POST"]),
    Route("/u/{name}/inbox", receive, methods=["POST"]),
]

"""Authorized fetch: the verifier `negotiation.require_signed_fetch` calls on every ActivityStreams GET when
`FORUM_FEDERATION_AUTHORIZED_FETCH=1`, plugged in by the composition root as `extra["authorized_fetch"]`.

A JSON GET must carry an HTTP signature, checked by the inbox's own machinery (`activitypub.signers`): it
covers the target, the host and the time (draft-cavage `(request-target) host date`, or RFC 9421 `@method`,
`@target-uri` or `@authority` with `@path`, and `created` or `date`), dated within the inbox's window, made
for this host, with a key whose owner we know or can fetch. Any fediverse actor's valid signature will do
(as in Mastodon); who signed is left on the request, as `request.state.signer` (a `signers.Signer`, with its
`domain`), for instance policies to come. Otherwise `401`, with the reason as problem+json and
`WWW-Authenticate: Signature`, and a log line.

The routes decide what is gated: the instance actor, discovery (WebFinger, NodeInfo, host-meta) and the
HTML pages never are; an actor's address answers an unsigned peer with its key only (see routes._actor).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request

from activitypub.protocol.signatures import SignatureError, signature_key_id
from activitypub.runtime import Federation
from activitypub.signers import SignatureRefused, Signer, is_our_host
from forum.ratelimit import address_key
from forum.web.context import forum_context
from forum.web.security import client_address

__all__ = ["AuthorizedFetch"]

log = logging.getLogger(__name__)

# What a peer should sign, said in the challenge (draft-cavage section 3.1.1).
CHALLENGE_HEADERS = "(request-target) host date"


class AuthorizedFetch:
    """The `extra["authorized_fetch"]` verifier: returns when the GET is signed, raises HTTPException 401
    otherwise (or RateLimited 429 for an address that makes us look up too many unknown keys)."""

    def __init__(self, federation: Federation) -> None:
        self._federation = federation
        self._challenge = f'Signature realm="{federation.settings.host}",headers="{CHALLENGE_HEADERS}"'

    async def __call__(self, request: Request) -> None:
        try:
            request.state.signer = await self._signer(request)
        except SignatureRefused as refusal:
            log.info("fetch refused %s from %s: %s", request.url.path, request.client, refusal.reason)
            raise HTTPException(
                401, f"This server requires signed fetches: {refusal.reason}.",
                headers={"WWW-Authenticate": self._challenge, "Vary": "Accept"},
            ) from None  # fmt: skip

    async def _signer(self, request: Request) -> Signer:
        federation = self._federation
        try:
            key_id, _form = signature_key_id(request.headers)
        except SignatureError as error:
            raise SignatureRefused(error.reason) from None
        host = request.headers.get("host", "")
        if not is_our_host(host, federation.settings.base_url):
            raise SignatureRefused(f"the request was signed for another host ({host[:100]!r}), not this one")
        if not federation.signers.remembers(key_id):
            # A key we do not hold costs a database read and perhaps a fetch: counted per address, as the
            # inbox counts its requests, so that naming ever new keys cannot make us fetch without end.
            limits = federation.settings.rate_limits
            address = address_key(client_address(request, federation.settings.trusted_proxies))
            forum_context(request).limiter.hit(
                "signed-fetch-address", address, limits.inbox_per_address, limits.inbox_window,
                "Too many signed fetches with unknown keys.",
            )  # fmt: skip
        return await federation.signers.verify(request, b"", key_id)

"""Request-level security: the client's address (behind trusted proxies), CSRF tokens, the Origin check."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from starlette.requests import HTTPConnection

from forum.config import IPNetwork

CSRF_COOKIE = "jardin_csrf"
SESSION_COOKIE = "jardin_session"
LANGUAGE_COOKIE = "jardin_lang"


def client_address(connection: HTTPConnection, trusted_proxies: tuple[IPNetwork, ...]) -> str:
    """The peer address; `X-Forwarded-For` counts only when the peer is a trusted proxy.

    Walks the header from the right, skipping trusted proxies, so a client cannot pick its own
    address by sending the header itself.
    """
    peer = connection.client.host if connection.client else "0.0.0.0"
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return peer
    forwarded = connection.headers.get("x-forwarded-for", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def request_scheme(connection: HTTPConnection, trusted_proxies: tuple[IPNetwork, ...]) -> str:
    peer = connection.client.host if connection.client else ""
    if trusted_proxies and _is_trusted(peer, trusted_proxies):
        return connection.headers.get("x-forwarded-proto", connection.url.scheme)
    return connection.url.scheme


def _is_trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def new_csrf_secret() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(secret_key: str, csrf_secret: str) -> str:
    """The token forms carry: an HMAC of the browser's CSRF cookie (double submit, signed)."""
    return hmac.new(secret_key.encode(), f"csrf:{csrf_secret}".encode(), hashlib.sha256).hexdigest()


def csrf_valid(secret_key: str, csrf_secret: str | None, token: str | None) -> bool:
    if not csrf_secret or not token:
        return False
    return hmac.compare_digest(csrf_token(secret_key, csrf_secret), token)


def origin_allowed(origin: str | None, own_origin: str, host: str | None) -> bool:
    """A state-changing request may come from our own pages, or from a client that sends no Origin.

    A browser always sends `Origin` on a cross-site POST, so a forged form from another site fails
    here even before its CSRF token is checked. The request's own `Host` counts as ours too (a
    browser cannot forge it), so the forum also works at an address other than its base URL — with
    the base URL's scheme: a page on `http://` (where a network attacker can write) is not our origin
    when we serve on `https://`.
    """
    if origin is None:
        return True
    scheme = own_origin.split("://", 1)[0]
    return origin == own_origin or (host is not None and origin == f"{scheme}://{host}")

"""The origin rules an activity's own claims must pass before anything of it is kept (FEP-fe34).

An inbox checks them before it answers, on a `Glance` (the claims read from the plain terms, when that reading
is certainly the normalized one) or on the normalized document; the inbox worker checks them again on the
normalized document it applies, and refuses an activity whose normalized reading says otherwise than what the
inbox checked and stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from activitypub.actors import as_strings
from activitypub.audiences import domain_of
from activitypub.protocol.jsonld import Glance

# Activities whose object is the author's own content: it must live on the author's host (FEP-fe34).
OWN_OBJECT_TYPES = frozenset({"Create", "Update"})


class OriginRefused(Exception):
    """An activity whose claims break an origin rule; `status` is what an inbox answers (400 or 401)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def claims_of(activity: Mapping[str, Any]) -> Glance:
    """The claims of a normalized activity, or OriginRefused (400) when it names no id, actor or single type."""
    activity_id, kind = activity.get("id"), activity.get("type")
    if not isinstance(activity_id, str):
        raise OriginRefused(400, "the activity has no id")
    actor = single(activity.get("actor"))
    if actor is None or not isinstance(kind, str):
        raise OriginRefused(400, "the activity names no actor or no type")
    return Glance(activity_id, kind, actor, single(activity.get("object")))


def check_origins(claims: Glance, own_host: str) -> Glance:
    """`claims` if they keep the origin rules, else OriginRefused: an id that is not an http(s) URL (400), an
    actor on another host than the activity or on ours, an own object on another host than its author's (401).
    `own_host` is lower-case."""
    if not claims.id.startswith(("https://", "http://")):
        raise OriginRefused(400, "the activity has no id")
    actor_host = domain_of(claims.actor)
    if actor_host != domain_of(claims.id):
        raise OriginRefused(401, "the activity's id and its actor are on different hosts")
    if actor_host == own_host:
        raise OriginRefused(401, "an activity of one of our own actors cannot come from elsewhere")
    if claims.type in OWN_OBJECT_TYPES and (claims.object_id is None or domain_of(claims.object_id) != actor_host):
        raise OriginRefused(401, "the object's id is on another host than its author")
    return claims


def single(value: object) -> str | None:
    ids = as_strings(value)
    return ids[0] if ids else None

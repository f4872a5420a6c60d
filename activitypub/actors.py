"""Forum actors -> ActivityStreams actor documents: `Group` per category, `Person` per member, the instance's
`Application`; and the instance actor itself, made on first need."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.objects import CONTEXT, Document, iso
from forum.models import Actor, ActorKind, Category
from forum.services.actors import create_local_actor

TYPES = {ActorKind.PERSON: "Person", ActorKind.GROUP: "Group", ActorKind.APPLICATION: "Application"}


def actor_document(actor: Actor, *, category: Category | None = None) -> Document:
    """The document peers fetch for a local actor; a category adds what FEP-1b12 Groups carry."""
    document: Document = {
        "@context": CONTEXT,
        "id": actor.ap_id,
        "type": TYPES[actor.kind],
        "preferredUsername": actor.username,
        "name": actor.display_name or actor.username,
        "summary": actor.summary,
        "url": actor.url or actor.ap_id,
        "inbox": actor.inbox_url,
        "outbox": actor.outbox_url,
        "followers": actor.followers_url,
        "endpoints": {"sharedInbox": actor.shared_inbox_url},
        "publicKey": {"id": actor.key_id, "owner": actor.ap_id, "publicKeyPem": actor.public_key_pem},
        "published": iso(actor.created_at),
        "manuallyApprovesFollowers": actor.manually_approves_followers,
        "discoverable": True,
        "indexable": True,
    }
    if actor.icon_url:
        document["icon"] = {"type": "Image", "url": actor.icon_url}
    if actor.kind == ActorKind.PERSON:
        document["following"] = f"{actor.ap_id}/following"
    if category is not None:
        document["name"] = category.name
        document["summary"] = category.description
        document["featured"] = f"{actor.ap_id}/featured"
        document["moderators"] = f"{actor.ap_id}/moderators"
        # Lemmy reads a Group's moderators from `attributedTo`.
        document["attributedTo"] = f"{actor.ap_id}/moderators"
        document["postingRestrictedToMods"] = category.posting_restricted_to_mods
        document["manuallyApprovesFollowers"] = category.approve_followers or category.private
        document["sensitive"] = False
    return document


def key_document(actor: Actor) -> Document:
    """What a key id dereferences to: the key, naming its owner."""
    return {
        "@context": CONTEXT,
        "id": actor.key_id,
        "type": "Key",
        "owner": actor.ap_id,
        "publicKeyPem": actor.public_key_pem,
    }


async def instance_actor(session: AsyncSession, base_url: str, host: str) -> Actor:
    """The `Application` that signs instance-level fetches; made the first time it is needed.

    Its name is the host: a dot never occurs in members' names or slugs, so it cannot collide.
    """
    actor = await session.scalar(select(Actor).where(Actor.kind == ActorKind.APPLICATION, Actor.local.is_(True)))
    if actor is None:
        actor = await create_local_actor(session, base_url, ActorKind.APPLICATION, host.lower(), host)
        actor.url = base_url
        actor.summary = ""
    return actor


def as_strings(value: Any) -> list[str]:
    """A property that may be a string, an object with an id, or a list of either, as ids."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("id"), str):
            out.append(item["id"])
    return out

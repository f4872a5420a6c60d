"""Local actors: the names they may take and their creation with a key pair and ActivityPub URLs."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forum.errors import N_, Conflict, InvalidInput
from forum.keys import generate_key_pair_async
from forum.models import Actor, ActorKind

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,29}$")
MAX_NAME_LENGTH = 30

# Names that would shadow a route, a well-known account or a role (checked case-insensitively).
RESERVED_NAMES = frozenset(
    [
        "admin",
        "administrator",
        "root",
        "system",
        "moderator",
        "moderators",
        "mod",
        "mods",
        "staff",
        "support",
        "help",
        "api",
        "inbox",
        "outbox",
        "followers",
        "following",
        "featured",
        "shared",
        "sharedinbox",
        "actor",
        "instance",
        "login",
        "logout",
        "register",
        "signup",
        "setup",
        "settings",
        "static",
        "assets",
        "theme",
        "themes",
        "u",
        "c",
        "t",
        "p",
        "tag",
        "tags",
        "search",
        "new",
        "garden",
        "gardener",
        "concierge",
        "healthz",
        "well-known",
        "wellknown",
        "nodeinfo",
        "webfinger",
        "host-meta",
        "everyone",
        "all",
        "null",
        "undefined",
        "anonymous",
        "guest",
        "me",
        "jardin",
        "forum",
    ]
)


def normalize_name(name: str) -> str:
    return name.strip()


_NAME_MESSAGES = {
    "username": {
        "empty": N_("Choose a username."),
        "long": N_("A username has at most %(count)d characters."),
        "pattern": N_("A username uses letters, digits and underscores, and starts with a letter or digit."),
        "reserved": N_("“%(name)s” is reserved; choose another username."),
        "taken": N_("“%(name)s” is already taken; choose another username."),
    },
    "slug": {
        "empty": N_("Choose a slug."),
        "long": N_("A slug has at most %(count)d characters."),
        "pattern": N_("A slug uses letters, digits and underscores, and starts with a letter or digit."),
        "reserved": N_("“%(name)s” is reserved; choose another slug."),
        "digits": N_("A slug needs at least one letter: addresses made only of digits are ids."),
        "taken": N_("“%(name)s” is already taken; choose another slug."),
    },
}


def check_name(name: str, *, what: str = "username") -> None:
    """Usernames and category slugs share one namespace and one shape; `what` names the field."""
    messages = _NAME_MESSAGES[what]
    if not name:
        raise InvalidInput(messages["empty"], field=what)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(messages["long"], field=what, count=MAX_NAME_LENGTH)
    if not NAME_PATTERN.match(name):
        raise InvalidInput(messages["pattern"], field=what)
    if name.lower() in RESERVED_NAMES:
        raise InvalidInput(messages["reserved"], field=what, name=name)
    if what == "slug" and name.isdigit():
        raise InvalidInput(messages["digits"], field=what)


async def ensure_name_free(session: AsyncSession, name: str, *, what: str = "username") -> None:
    taken = await session.scalar(select(Actor.id).where(Actor.username_key == name.lower(), Actor.domain == ""))
    if taken is not None:
        raise Conflict(_NAME_MESSAGES[what]["taken"], field=what, name=name)


async def create_local_actor(
    session: AsyncSession, base_url: str, kind: ActorKind, name: str, display_name: str = ""
) -> Actor:
    """A new local actor with its key pair; its URLs derive from its name."""
    private_pem, public_pem = await generate_key_pair_async()
    prefix = {ActorKind.PERSON: "u", ActorKind.GROUP: "c", ActorKind.APPLICATION: ""}[kind]
    ap_id = f"{base_url}/{prefix}/{name}" if prefix else f"{base_url}/actor"
    actor = Actor(
        ap_id=ap_id,
        local=True,
        kind=kind,
        username=name,
        username_key=name.lower(),
        domain="",
        display_name=display_name,
        summary="",
        url=ap_id,
        inbox_url=f"{ap_id}/inbox",
        outbox_url=f"{ap_id}/outbox",
        followers_url=f"{ap_id}/followers",
        shared_inbox_url=f"{base_url}/inbox",
        public_key_pem=public_pem,
        private_key_pem=private_pem,
        key_id=f"{ap_id}#main-key",
    )
    session.add(actor)
    await session.flush()
    return actor

"""Remote actors and objects: WebFinger, signed fetches through the guarded client, and their local records.

Implements `forum.ports.RemoteResolver`. Network work happens before the database write, so no
transaction stays open across a fetch. Actors are refreshed when their stored copy is a day old, or
on demand when a signature fails with the key we had (key rotation).
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activitypub.actors import as_strings, instance_actor
from activitypub.audiences import domain_of
from activitypub.protocol.client import JSON_ACCEPT, JSON_TYPES, FetchError, GuardedClient
from activitypub.protocol.jsonld import DocumentError, Glance, Normalizer
from activitypub.protocol.signatures import HttpSignatureAuth, SigningKey
from forum import markup
from forum.config import Settings
from forum.models import Actor, ActorKind, Category, Instance
from forum.models.base import utcnow

log = logging.getLogger(__name__)

ACTOR_TYPES = {
    "Person": ActorKind.PERSON,
    "Service": ActorKind.PERSON,
    "Organization": ActorKind.PERSON,
    "Group": ActorKind.GROUP,
    "Application": ActorKind.APPLICATION,
}
REFRESH_AFTER = timedelta(days=1)
# Built once: every received activity looks its author up.
_ACTOR_BY_ID = select(Actor).where(Actor.ap_id == bindparam("ap_id"))
HANDLE = re.compile(r"^@?(?P<name>[^@\s/]+)@(?P<host>[A-Za-z0-9.-]+(?::\d{1,5})?)$")
# A colon too: an instance actor is named after its host (Mastodon's, Jardin's), which has a port in labs.
USERNAME = re.compile(r"^[A-Za-z0-9_.~:-]{1,255}$")
# Software whose users see FEP-1b12 Groups as forums: replies and edits reach them announced.
GROUP_SOFTWARE = {"lemmy", "piefed", "mbin", "kbin", "nodebb", "jardin", "friendica", "discourse", "lotide", "fedify"}


class ResolveError(Exception):
    """A name or address that could not be resolved; the reason is for people."""


class ActivityPubResolver:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        client: GuardedClient,
        normalizer: Normalizer,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._client = client
        self._normalizer = normalizer
        self._auth: HttpSignatureAuth | None = None
        self._auth_lock = asyncio.Lock()

    # -- forum.ports.RemoteResolver --------------------------------------------------------------

    async def resolve_actor(self, session: AsyncSession, handle_or_url: str) -> Actor | None:
        try:
            return await self.actor(session, await self.actor_url(handle_or_url))
        except (ResolveError, FetchError, DocumentError) as error:
            log.info("could not resolve %s: %s", handle_or_url, error)
            return None

    # -- actors ----------------------------------------------------------------------------------

    async def actor_url(self, handle_or_url: str) -> str:
        """The actor id a handle names (through WebFinger), or the URL itself."""
        text = handle_or_url.strip().removeprefix("acct:")
        if text.startswith(("https://", "http://")):
            return text
        match = HANDLE.match(text)
        if match is None:
            raise ResolveError(f"“{handle_or_url}” is neither name@host nor an https address.")
        scheme = "http" if self.settings.federation_allow_private else "https"
        name, host = match["name"], match["host"].lower()
        url = f"{scheme}://{host}/.well-known/webfinger?resource={quote(f'acct:{name}@{host}', safe=':@')}"
        fetched = await self._client.get_json(url, accept=JSON_ACCEPT, accept_types=JSON_TYPES)
        for link in fetched.document.get("links") or []:
            if (
                isinstance(link, dict)
                and link.get("rel") == "self"
                and isinstance(link.get("href"), str)
                and str(link.get("type", "")).startswith(("application/activity+json", "application/ld+json"))
            ):
                return str(link["href"])
        raise ResolveError(f"{host} answered for “{name}” but names no ActivityPub actor.")

    async def actor(self, session: AsyncSession, ap_id: str, *, refresh: bool = False) -> Actor:
        """The stored actor for an id, fetched (or refreshed) when needed."""
        known = await session.scalar(_ACTOR_BY_ID, {"ap_id": ap_id})
        if known is not None and (known.local or (not refresh and not self.needs_refresh(known))):
            return known
        document = await self.fetch(ap_id)
        return await self.store_actor(session, document)

    async def key_owner(self, session: AsyncSession, key_id: str, *, refresh: bool = False) -> Actor:
        """The actor whose key signed a request; its id and the key's share a host."""
        if not refresh:
            known = await session.scalar(select(Actor).where(Actor.key_id == key_id))
            if known is not None:
                return known
        document = await self.fetch(key_id.split("#", 1)[0])
        if document.get("type") in ACTOR_TYPES:
            actor = await self.store_actor(session, document)
        else:
            owner = document.get("owner") or document.get("controller")
            if not isinstance(owner, str) or domain_of(owner) != domain_of(key_id):
                raise ResolveError("the key names no owner on its own host")
            # Fetched before the session is used, as the key was: no connection waits on the peer.
            actor = await self.store_actor(session, await self.fetch(owner))
        if actor.key_id != key_id:
            raise ResolveError(f"the key {key_id} is not the key of {actor.ap_id}")
        return actor

    def needs_refresh(self, actor: Actor) -> bool:
        """A remote actor's record is old enough to be fetched again before it is used."""
        return actor.fetched_at is None or utcnow() - actor.fetched_at > REFRESH_AFTER

    async def store_actor(self, session: AsyncSession, document: dict[str, Any]) -> Actor:
        """Create or update the record of a remote actor from its (normalized) document."""
        ap_id = document.get("id")
        kind = ACTOR_TYPES.get(str(document.get("type")))
        if not isinstance(ap_id, str) or kind is None:
            raise ResolveError("the document is not an actor")
        if domain_of(ap_id) == self.settings.host.lower():
            raise ResolveError("a copy of one of our own actors is never stored")
        key = document.get("publicKey")
        key = key[0] if isinstance(key, list) and key else key
        if not isinstance(key, dict) or not isinstance(key.get("publicKeyPem"), str):
            raise ResolveError(f"{ap_id} has no public key")
        if key.get("owner", ap_id) != ap_id or domain_of(str(key.get("id", ""))) != domain_of(ap_id):
            raise ResolveError(f"the key of {ap_id} belongs to someone else")
        domain = domain_of(ap_id)
        username = str(document.get("preferredUsername") or urlsplit(ap_id).path.rstrip("/").rsplit("/", 1)[-1])
        if not USERNAME.match(username):
            raise ResolveError(f"{ap_id} has an unusable name")
        actor = await session.scalar(select(Actor).where(Actor.ap_id == ap_id))
        if actor is None:
            # The same handle with a new id (an account recreated on its server) takes the old record's place.
            actor = await session.scalar(
                select(Actor).where(Actor.username_key == username.lower(), Actor.domain == domain)
            )
            if actor is None:
                actor = Actor(ap_id=ap_id, local=False, kind=kind, username=username, domain=domain)
                session.add(actor)
        endpoints = document.get("endpoints") if isinstance(document.get("endpoints"), dict) else {}
        assert isinstance(endpoints, dict)
        icon = document.get("icon")
        icon = icon[0] if isinstance(icon, list) and icon else icon
        actor.ap_id, actor.kind, actor.username, actor.username_key = ap_id, kind, username, username.lower()
        actor.domain = domain
        actor.display_name = markup.plain_text(str(document.get("name") or ""))[:255]
        actor.summary = markup.sanitize(str(document.get("summary") or ""))[:10_000]
        actor.icon_url = _first_url(icon.get("url") if isinstance(icon, dict) else icon)
        actor.url = _first_url(document.get("url")) or ap_id
        actor.inbox_url = _string(document.get("inbox"))
        actor.shared_inbox_url = _string(endpoints.get("sharedInbox"))
        actor.outbox_url = _string(document.get("outbox"))
        actor.followers_url = _string(document.get("followers"))
        actor.featured_url = _string(document.get("featured"))
        actor.manually_approves_followers = bool(document.get("manuallyApprovesFollowers"))
        actor.public_key_pem, actor.key_id = key["publicKeyPem"], str(key.get("id"))
        actor.fetched_at = actor.updated_at = utcnow()
        actor.gone_at = None
        await session.flush()
        if kind == ActorKind.GROUP:
            await self._remote_category(session, actor)
        return actor

    async def _remote_category(self, session: AsyncSession, actor: Actor) -> Category:
        category = await session.scalar(select(Category).where(Category.actor_id == actor.id))
        if category is None:
            category = Category(actor_id=actor.id, slug=f"{actor.username}@{actor.domain}", local=False, position=0)
            session.add(category)
        category.name = (actor.display_name or actor.username)[:100]
        category.description = markup.plain_text(actor.summary)[:2000]
        category.approve_followers = actor.manually_approves_followers
        await session.flush()
        return category

    # -- fetching --------------------------------------------------------------------------------

    async def fetch(self, url: str) -> dict[str, Any]:
        """A remote document, signed by the instance actor (authorized-fetch peers require it), normalized."""
        if domain_of(url) == self.settings.host.lower():
            raise ResolveError("our own objects are read from the database, not fetched")
        fetched = await self._client.fetch_object(url, auth=await self._instance_auth())
        return self.normalize(fetched.document)

    def normalize(self, document: dict[str, Any]) -> dict[str, Any]:
        return self._normalizer.normalize(document).document

    def glance(self, document: dict[str, Any]) -> Glance | None:
        return self._normalizer.glance(document)

    async def _instance_auth(self) -> HttpSignatureAuth:
        if self._auth is not None:
            return self._auth
        # The instance actor is made on first use: concurrent first fetches here wait for one of them,
        # and another process making it at the same moment only costs a second read.
        async with self._auth_lock:
            for attempt in range(2):
                if self._auth is not None:
                    break
                try:
                    async with self._sessions() as session, session.begin():
                        actor = await instance_actor(session, self.settings.base_url, self.settings.host)
                        assert actor.key_id and actor.private_key_pem
                        self._auth = HttpSignatureAuth(SigningKey(actor.key_id, actor.private_key_pem))
                except IntegrityError:
                    if attempt:
                        raise
        assert self._auth is not None
        return self._auth

    # -- instances -------------------------------------------------------------------------------

    async def instance(self, session: AsyncSession, domain: str) -> Instance:
        """The instance record, with its software read from NodeInfo once."""
        instance = await session.scalar(select(Instance).where(Instance.domain == domain))
        if instance is not None and instance.nodeinfo_fetched_at is not None:
            return instance
        # The network first, then the write: no transaction waits on a peer.
        software = await self._software(domain)
        if instance is None:
            instance = Instance(domain=domain, failures=0, unreachable=False, understands_groups=False)
            session.add(instance)
        instance.nodeinfo_fetched_at = utcnow()
        if software is not None:
            instance.software, instance.version = software
            instance.understands_groups = software[0] in GROUP_SOFTWARE
        await session.flush()
        return instance

    async def _software(self, domain: str) -> tuple[str, str] | None:
        scheme = "http" if self.settings.federation_allow_private else "https"
        types = ("application/json", "application/jrd+json")
        try:
            index = (
                await self._client.get_json(
                    f"{scheme}://{domain}/.well-known/nodeinfo", accept=types[0], accept_types=types
                )
            ).document
            links = [link for link in index.get("links") or [] if isinstance(link, dict)]
            href = next((str(link["href"]) for link in reversed(links) if "nodeinfo" in str(link.get("rel"))), None)
            if href is None or domain_of(href) != domain:
                return None
            info = (await self._client.get_json(href, accept=types[0], accept_types=types)).document
        except (FetchError, DocumentError, KeyError, TypeError):
            return None
        software = info.get("software") if isinstance(info.get("software"), dict) else {}
        assert isinstance(software, dict)
        return str(software.get("name", "")).lower()[:64], str(software.get("version", ""))[:64]

    async def mark_reachable(self, session: AsyncSession, domain: str) -> None:
        await session.execute(
            update(Instance)
            .where(Instance.domain == domain, Instance.unreachable.is_(True))
            .values(unreachable=False, probe_at=None, failures=0, first_failure_at=None)
        )


def _string(value: object) -> str | None:
    strings = as_strings(value)
    return strings[0] if strings else None


def _first_url(value: object) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("href") or value.get("url")
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None

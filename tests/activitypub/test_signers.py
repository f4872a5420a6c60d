"""`activitypub.signers` against a real database: the keys of recent signers are kept in memory, a bounded
number of them, so that a stream of signed requests from known peers costs no database read."""

from __future__ import annotations

from sqlalchemy import event
from starlette.requests import Request

from activitypub.protocol.client import GuardedClient
from activitypub.protocol.jsonld import Normalizer
from activitypub.protocol.signatures import SigningKey, sign_request
from activitypub.resolver import ActivityPubResolver
from activitypub.signers import Signer, Signers
from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.keys import generate_key_pair
from forum.models import Actor, ActorKind
from tests.conftest import BASE_URL

PEERS = ("ann", "ben", "cid")


def signed_get(key: SigningKey, path: str = "/c/general") -> Request:
    url = f"{BASE_URL}{path}"
    headers = sign_request("GET", url, {}, None, key)
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return Request({"type": "http", "method": "GET", "scheme": "http", "path": path, "query_string": b"",
                    "headers": raw, "server": ("127.0.0.1", 8000)})  # fmt: skip


async def test_recent_keys_are_kept_in_memory_and_bounded(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    sessions = sessionmaker(engine)
    keys: dict[str, SigningKey] = {}
    async with sessions() as session, session.begin():
        for name in PEERS:
            private, public = generate_key_pair()
            ap_id = f"https://{name}.example/users/{name}"
            keys[name] = SigningKey(f"{ap_id}#main-key", private)
            session.add(Actor(ap_id=ap_id, local=False, kind=ActorKind.PERSON, username=name, username_key=name,
                              domain=f"{name}.example", key_id=keys[name].key_id, public_key_pem=public))  # fmt: skip
    reads: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: reads.append(args[2]))
    async with GuardedClient(allow_private=False, user_agent="test") as client:
        signers = Signers(sessions, ActivityPubResolver(settings, sessions, client, Normalizer()), keep=2)
        ann = await signers.verify(signed_get(keys["ann"]), b"", keys["ann"].key_id)
        assert ann == Signer(keys["ann"].key_id, "https://ann.example/users/ann", ann.public_key_pem)
        assert ann.domain == "ann.example" and len(reads) == 1
        await signers.verify(signed_get(keys["ann"], "/t/1"), b"", keys["ann"].key_id)
        assert len(reads) == 1  # known: no read
        await signers.verify(signed_get(keys["ben"]), b"", keys["ben"].key_id)
        await signers.verify(signed_get(keys["cid"]), b"", keys["cid"].key_id)
        # Two are kept: the least recently used one went.
        assert [signers.remembers(keys[name].key_id) for name in PEERS] == [False, True, True]
    await engine.dispose()

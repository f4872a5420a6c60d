"""Authorized fetch (`FORUM_FEDERATION_AUTHORIZED_FETCH=1`) on a running Jardin, over real HTTP: peers must
sign their GETs of our ActivityStreams documents; browsers, discovery and the instance actor are never asked
to; a signing remote server on 127.0.0.2 (`remote.py`, real keys) is believed, its forged, stale or
misdirected signatures are not. (The tests with a database of their own, two Jardins among them, are in
test_authorized_fetch_instances.py.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import event, select

from activitypub.protocol.signatures import SignatureForm, sign_request
from forum.models import OutgoingActivity
from tests.conftest import BACKENDS, module_database
from tests.federation.instances import Instance, running
from tests.federation.remote import Remote, RemoteActor, cavage_headers, rfc9421_headers

pytestmark = pytest.mark.slow

PEER = {"Accept": "application/activity+json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
# Every ActivityStreams document a peer may fetch, but the actors (whose key an unsigned peer still gets).
DOCUMENTS = ("page", "note", "activity", "group outbox", "person outbox", "followers", "featured", "context")
ACTORS = ("group", "person")


@dataclass
class Lab:
    jardin: Instance
    remote: Remote
    bob: RemoteActor
    paths: dict[str, str]

    def url(self, name: str) -> str:
        return self.jardin.base_url + self.paths.get(name, name)


@pytest.fixture(scope="module", params=BACKENDS)
def lab_database(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    yield from module_database(request, sqlite_template, tmp_path_factory, "authorized-fetch")


@pytest.fixture(scope="module")
async def lab(lab_database: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    data_dir = tmp_path_factory.mktemp("jardin")
    async with (
        Remote("127.0.0.2") as remote,
        running("127.0.0.1", lab_database, data_dir, federation_authorized_fetch=True) as jardin,
    ):
        await jardin.category("general", "General")
        alice = await jardin.member("alice")
        thread = await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Ours", "body": "Hi"})
        assert thread.status_code == 201, thread.text
        thread_id = thread.json()["id"]
        reply = await jardin.api(alice, "POST", f"/threads/{thread_id}/posts", {"body": "Again"})
        assert reply.status_code == 201, reply.text
        async with jardin.forum.read() as session:
            activity = await session.scalar(select(OutgoingActivity.ap_id).where(OutgoingActivity.type == "Create"))
        assert activity is not None
        paths = {
            "group": "/c/general", "person": "/u/alice", "page": f"/t/{thread_id}",
            "note": urlsplit(reply.json()["ap_id"]).path, "activity": urlsplit(activity).path,
            "group outbox": "/c/general/outbox", "person outbox": "/u/alice/outbox",
            "followers": "/c/general/followers", "featured": "/c/general/featured",
            "context": f"/t/{thread_id}/context",
        }  # fmt: skip
        yield Lab(jardin, remote, remote.actor("bob"), paths)


async def signed_get(
    lab: Lab, name: str, actor: RemoteActor | None = None, *, form: SignatureForm = "cavage", **how: Any
) -> httpx.Response:
    """GET as an honest peer does, with the production signer (`how` may set its `now`)."""
    url = lab.url(name)
    signer = actor or lab.bob
    return await lab.remote.get(
        url, {**PEER, **sign_request("GET", url, {}, None, signer.signing_key, form=form, **how)}
    )


def refused_with(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert reason in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Signature ")


# -- what is gated and what is not ----------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCUMENTS)
async def test_an_unsigned_fetch_of_a_document_is_refused_with_its_reason(
    lab: Lab, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="activitypub.fetch_auth")
    refused_with(await lab.remote.get(lab.url(name), PEER), "not signed")
    assert any(f"fetch refused {lab.paths[name]}" in record.getMessage() for record in caplog.records)
    # The same request, signed by a known peer: served.
    signed = await signed_get(lab, name)
    assert signed.status_code == 200, signed.text
    assert signed.headers["content-type"].startswith("application/activity+json")


@pytest.mark.parametrize("name", ACTORS)
async def test_an_unsigned_fetch_of_an_actor_gets_its_key_and_nothing_else(lab: Lab, name: str) -> None:
    """What Mastodon does in secure mode: whoever verifies what the actor signs needs its key."""
    unsigned = await lab.remote.get(lab.url(name), PEER)
    assert unsigned.headers["cache-control"] == "private"
    key = unsigned.json()
    assert key["type"] == "Key" and key["owner"] == lab.url(name) and "publicKeyPem" in key
    assert not {"inbox", "outbox", "name", "summary", "preferredUsername"} & key.keys()
    actor = (await signed_get(lab, name)).json()
    assert actor["type"] == ("Group" if name == "group" else "Person") and actor["inbox"]


@pytest.mark.parametrize("name", ("group", "person", "page", "note", "context", "group outbox"))
async def test_browsers_are_never_asked_to_sign(lab: Lab, name: str) -> None:
    async with httpx.AsyncClient(base_url=lab.jardin.base_url, follow_redirects=True) as browser:
        response = await browser.get(lab.paths[name], headers=BROWSER)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")


async def test_the_instance_actor_and_discovery_are_never_gated(lab: Lab) -> None:
    http = lab.jardin.http
    instance = await http.get("/actor", headers=PEER)
    assert instance.status_code == 200 and instance.json()["type"] == "Application"
    assert instance.json()["publicKey"]["publicKeyPem"]
    finger = await http.get(f"/.well-known/webfinger?resource=acct:general@{lab.jardin.host}")
    assert finger.status_code == 200 and finger.json()["links"][0]["href"] == lab.url("group")
    links = await http.get("/.well-known/nodeinfo")
    assert links.status_code == 200
    assert (await http.get("/nodeinfo/2.1")).json()["software"]["name"] == "jardin"
    assert (await http.get("/.well-known/host-meta")).status_code == 200


# -- signatures believed and refused ----------------------------------------------------------------------


@pytest.mark.parametrize("form", ["cavage", "rfc9421"])
async def test_a_fetch_signed_by_a_remote_actor_is_served(lab: Lab, form: SignatureForm) -> None:
    group = await signed_get(lab, "group", form=form)
    assert group.status_code == 200, group.text
    assert group.json()["type"] == "Group" and group.json()["followers"] == lab.url("followers")
    page = await signed_get(lab, "page", form=form)
    assert page.status_code == 200 and page.json()["type"] == "Page"
    # Answered for this peer: no shared cache may keep it for the next asker, nor the copy from the page cache.
    again = await signed_get(lab, "page", form=form)
    assert again.json() == page.json() and again.headers["etag"] == page.headers["etag"]
    for response in (group, page, again):
        assert response.headers["cache-control"] == "private"


@pytest.mark.parametrize("form", ["cavage", "rfc9421"])
async def test_a_signature_that_does_not_cover_the_host_is_refused(lab: Lab, form: str) -> None:
    url = lab.url("page")
    key = lab.bob.signing_key
    if form == "cavage":
        weak = cavage_headers("GET", url, b"", key, covered=("(request-target)", "date"), digest=None)
        full = cavage_headers("GET", url, b"", key, covered=("(request-target)", "host", "date"), digest=None)
    else:
        weak = rfc9421_headers("GET", url, b"", key, covered=("@method", "@path", "date"), content_digest=None)
        full = rfc9421_headers("GET", url, b"", key, covered=("@method", "@path", "@authority"), content_digest=None)
    refused_with(await lab.remote.get(url, {**PEER, **weak}), "must cover")
    # The same signature over the host too: believed, so the refusal was the missing host's doing.
    assert (await lab.remote.get(url, {**PEER, **full})).status_code == 200


@pytest.mark.parametrize("form", ["cavage", "rfc9421"])
async def test_stale_and_future_dates_are_refused(lab: Lab, form: SignatureForm) -> None:
    now = datetime.now(UTC)
    refused_with(await signed_get(lab, "page", form=form, now=now - timedelta(minutes=61)), "too old")
    refused_with(await signed_get(lab, "page", form=form, now=now + timedelta(minutes=6)), "ahead")
    assert (await signed_get(lab, "page", form=form, now=now - timedelta(minutes=58))).status_code == 200


async def test_a_fetch_signed_for_another_server_is_refused(lab: Lab) -> None:
    url = lab.url("page")
    captured = sign_request("GET", url, {"Host": "forum.example"}, None, lab.bob.signing_key)
    refused_with(await lab.remote.get(url, {**PEER, **captured}), "another host")


async def test_a_key_that_cannot_be_fetched_is_refused(lab: Lab) -> None:
    url = lab.url("page")
    unknown = cavage_headers("GET", url, b"", lab.bob.signing_key, covered=("(request-target)", "host", "date"),
                             digest=None, key_id=lab.remote.url("/users/nobody#main-key"))  # fmt: skip
    refused_with(await lab.remote.get(url, {**PEER, **unknown}), "could not be fetched")
    assert lab.remote.requests_for("/users/nobody")  # asked, and answered 404


async def test_a_signature_by_another_key_than_the_named_one_is_refused(lab: Lab) -> None:
    url = lab.url("page")
    impostor = lab.remote.actor("impostor")
    # Signed with the impostor's private key, claiming bob's key: bob's key is fetched again once, then refused.
    forged = cavage_headers("GET", url, b"", impostor.signing_key, covered=("(request-target)", "host", "date"),
                            digest=None, key_id=lab.bob.key_id)  # fmt: skip
    refused_with(await lab.remote.get(url, {**PEER, **forged}), "does not match")
    before = len(lab.remote.requests_for("/users/bob"))
    refused_with(await lab.remote.get(url, {**PEER, **forged}), "does not match")
    assert len(lab.remote.requests_for("/users/bob")) == before  # at most one re-fetch a minute
    assert (await signed_get(lab, "page")).status_code == 200  # bob himself is still believed


async def test_a_rotated_key_is_fetched_again(lab: Lab) -> None:
    old = lab.remote.actor("rotating")
    assert (await signed_get(lab, "page", old)).status_code == 200
    new = lab.remote.actor("rotating")  # the same actor with a new key, as its server now publishes it
    assert (await signed_get(lab, "page", new)).status_code == 200
    refused_with(await signed_get(lab, "page", old), "does not match")


async def test_a_key_seen_lately_costs_no_database_read(lab: Lab) -> None:
    """Authorized fetch must stay cheap for the fetches peers make all day: a key verified lately is kept."""
    carol = lab.remote.actor("carol")
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "actors.key_id" in statement:
            statements.append(statement)

    engine = lab.jardin.forum.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert (await signed_get(lab, "group", carol)).status_code == 200
        assert statements  # the first time, the key is looked up (and fetched)
        statements.clear()
        for _ in range(5):
            assert (await signed_get(lab, "group", carol)).status_code == 200
        assert statements == []
    finally:
        event.remove(engine, "before_cursor_execute", count)

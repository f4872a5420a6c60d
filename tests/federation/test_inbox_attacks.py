"""Attacks on the inbox of a running Jardin (uvicorn, its workers, a real database), sent over real HTTP by
a scriptable remote server (`remote.py`) on 127.0.0.2 and 127.0.0.3.

Every attack is refused without effect: its status (401 for signatures and origins, 400 for malformed
bodies, 413 for oversize, 429 for a flood), no received-activity row, no post, no change to what it
targeted; and every test also sends the honest version of the same request and sees it accepted, so that
each refusal is the attack's doing and not a broken test. One Jardin serves the whole module per database;
the rate limit and the address guard need other settings and get an instance of their own on the same
database. The protocol layer itself (signature parsing, the client's guard, JSON-LD) is unit-tested in
tests/activitypub/protocol; this module is about what the inbox does with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from activitypub.protocol.signatures import SignatureForm, sign_request
from forum.config import RateLimits
from forum.models import Post, ReceivedActivity, ReceivedState, Thread
from tests.conftest import BACKENDS, module_database
from tests.federation.instances import Instance, eventually, running
from tests.federation.remote import (
    AS_CONTEXT,
    PUBLIC,
    SECURITY_CONTEXT,
    Listener,
    Remote,
    RemoteActor,
    cavage_headers,
    ld_sign,
    rfc9421_headers,
)

pytestmark = pytest.mark.slow

SETTLED = (ReceivedState.DONE, ReceivedState.REFUSED, ReceivedState.FAILED)
# Slow peers at once: more than the database pool's connections (4 on SQLite, 10 + 10 on PostgreSQL).
SLOW = 24


@dataclass
class Lab:
    jardin: Instance
    database_url: str
    data_dir: Path
    remote: Remote  # 127.0.0.2: bob and carol's server
    other: Remote  # 127.0.0.3: another server
    bob: RemoteActor
    carol: RemoteActor  # bob's neighbour, with a 4096-bit key
    dave: RemoteActor  # on the other server
    alice_token: str
    thread_id: int  # alice's local thread
    thread_ap_id: str

    @property
    def inbox(self) -> str:
        return f"{self.jardin.base_url}/inbox"

    @property
    def group(self) -> str:
        return f"{self.jardin.base_url}/c/general"


@pytest.fixture(scope="module", params=BACKENDS)
def lab_database(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    yield from module_database(request, sqlite_template, tmp_path_factory, "inbox-attacks")


@pytest.fixture(scope="module")
async def lab(lab_database: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    data_dir = tmp_path_factory.mktemp("jardin")
    async with (
        Remote("127.0.0.2") as remote,
        Remote("127.0.0.3") as other,
        running("127.0.0.1", lab_database, data_dir / "main") as jardin,
    ):
        await jardin.category("general", "General")
        alice = await jardin.member("alice")
        created = await jardin.api(alice, "POST", "/threads", {"category": "general", "title": "Ours", "body": "Mine"})
        assert created.status_code == 201, created.text
        lab = Lab(
            jardin, lab_database, data_dir, remote, other,
            bob=remote.actor("bob"), carol=remote.actor("carol", bits=4096), dave=other.actor("dave"),
            alice_token=alice, thread_id=created.json()["id"], thread_ap_id=created.json()["ap_id"],
        )  # fmt: skip
        # Bob is known from the start: his key is in the database, as a peer's is after its first delivery.
        first = new_thread(lab, lab.bob)
        await accepted(lab, await remote.deliver(lab.bob, lab.inbox, first), first)
        yield lab


# -- unsigned, badly signed, stale, replayed ---------------------------------------------------------------


async def test_an_unsigned_post_is_refused_and_logged(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="activitypub.inbox")
    activity = new_thread(lab, lab.bob)
    body = json.dumps(activity).encode()
    response = await lab.remote.post(lab.inbox, body, {"Date": _http_date(datetime.now(UTC))})
    await refused(lab, response, 401, "not signed", activity)
    assert any("inbox refused /inbox" in r.getMessage() and "not signed" in r.getMessage() for r in caplog.records)
    # The same request, signed: accepted and made into a thread by the worker.
    await accepted(lab, await lab.remote.deliver(lab.bob, lab.inbox, activity), activity)
    assert await eventually(lambda: post_exists(lab, activity["object"]["id"]))


CAVAGE_WEAK = [
    (("(request-target)", "host", "date"), {}, "a POST signature must cover digest"),
    (("(request-target)", "host", "digest"), {}, "a signature must cover date or (created)"),
    (("host", "date", "digest"), {}, "a POST signature must cover (request-target)"),
    (("(request-target)", "host", "date", "digest"), {"digest": None}, "covers the digest header, which the"),
]


@pytest.mark.parametrize(("covered", "bent", "reason"), CAVAGE_WEAK, ids=[case[2] for case in CAVAGE_WEAK])
async def test_a_cavage_signature_must_cover_the_target_the_date_and_the_digest(
    lab: Lab, covered: tuple[str, ...], bent: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="activitypub.inbox")
    activity = new_thread(lab, lab.bob)
    body = json.dumps(activity).encode()
    weak = cavage_headers("POST", lab.inbox, body, lab.bob.signing_key, covered=covered, **bent)
    await refused(lab, await lab.remote.post(lab.inbox, body, weak), 401, reason, activity)
    assert any(reason in record.getMessage() for record in caplog.records if record.name == "activitypub.inbox")
    # The hand-made signature over everything it must cover is accepted: the refusal was the gap's doing.
    full = cavage_headers("POST", lab.inbox, body, lab.bob.signing_key)
    await accepted(lab, await lab.remote.post(lab.inbox, body, full), activity)


RFC9421_WEAK = [
    (("@method", "@target-uri", "date"), {}, "a POST signature must cover content-digest"),
    (("@target-uri", "content-digest", "date"), {}, "a POST signature must cover @method"),
    (("@method", "@authority", "content-digest"), {}, "must cover @target-uri or @path or @request-target"),
    (("@method", "@target-uri", "content-digest"), {"created": None}, "must cover date, or have a created"),
    (("@method", "@target-uri", "content-digest"), {"content_digest": None}, "content-digest header, which the"),
]


@pytest.mark.parametrize(("covered", "bent", "reason"), RFC9421_WEAK, ids=[case[2] for case in RFC9421_WEAK])
async def test_an_rfc9421_signature_must_cover_the_method_the_target_and_the_digest(
    lab: Lab, covered: tuple[str, ...], bent: dict[str, Any], reason: str
) -> None:
    activity = new_thread(lab, lab.bob)
    body = json.dumps(activity).encode()
    weak = rfc9421_headers("POST", lab.inbox, body, lab.bob.signing_key, covered=covered, **bent)
    await refused(lab, await lab.remote.post(lab.inbox, body, weak), 401, reason, activity)
    full = rfc9421_headers("POST", lab.inbox, body, lab.bob.signing_key)
    await accepted(lab, await lab.remote.post(lab.inbox, body, full), activity)


@pytest.mark.parametrize("form", ["cavage", "rfc9421"])
async def test_a_request_signed_for_another_server_is_refused_here(lab: Lab, form: str) -> None:
    """A delivery meant for another server (its Host signed), replayed to our inbox by that server."""
    activity = new_thread(lab, lab.bob)
    body = json.dumps(activity).encode()
    elsewhere = f"{lab.other.base_url}/inbox"
    sign = cavage_headers if form == "cavage" else rfc9421_headers
    captured = sign("POST", elsewhere, body, lab.bob.signing_key)
    await refused(lab, await lab.remote.post(lab.inbox, body, captured), 401, "another host", activity)
    honest = sign("POST", lab.inbox, body, lab.bob.signing_key)
    await accepted(lab, await lab.remote.post(lab.inbox, body, honest), activity)


async def test_get_does_not_apply_to_the_inbox(lab: Lab) -> None:
    """The inbox takes only POST, signed or not; signed GETs are authorized fetch's, tested with a signature
    that does not cover `host` in test_authorized_fetch.py."""
    url = lab.inbox
    response = await lab.remote.get(url, sign_request("GET", url, {}, None, lab.bob.signing_key))
    assert response.status_code == 405


@pytest.mark.parametrize("form", ["cavage", "rfc9421"])
async def test_stale_and_future_dates_are_refused(lab: Lab, form: SignatureForm) -> None:
    now = datetime.now(UTC)
    # A request captured more than an hour ago (never delivered then), and one dated ahead of our clock.
    for moment, reason in ((now - timedelta(minutes=61), "too old"), (now + timedelta(minutes=6), "ahead")):
        activity = new_thread(lab, lab.bob)
        response = await lab.remote.deliver(lab.bob, lab.inbox, activity, form=form, now=moment)
        await refused(lab, response, 401, reason, activity)
    # Inside the window, either way, the same signer is believed.
    for moment in (now - timedelta(minutes=58), now + timedelta(minutes=4)):
        activity = new_thread(lab, lab.bob)
        await accepted(lab, await lab.remote.deliver(lab.bob, lab.inbox, activity, form=form, now=moment), activity)


async def test_a_captured_request_replayed_after_the_window_is_refused(lab: Lab) -> None:
    activity = new_thread(lab, lab.bob)
    body = json.dumps(activity).encode()
    signed_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=3597)
    headers = sign_request("POST", lab.inbox, {}, body, lab.bob.signing_key, now=signed_at)
    # Delivered three seconds before the hour is up: accepted.
    await accepted(lab, await lab.remote.post(lab.inbox, body, headers), activity)
    # The very same bytes, sent again once the hour is over: refused, and still one row.
    await asyncio.sleep(max(0.0, signed_at.timestamp() + 3601 - time.time()))
    replayed = await lab.remote.post(lab.inbox, body, headers)
    assert replayed.status_code == 401, replayed.text
    assert "too old" in replayed.json()["detail"]
    assert await stored(lab, activity["id"]) == 1


@pytest.mark.parametrize("form", ["cavage", "rfc9421"])
async def test_a_digest_that_does_not_match_the_body_is_refused(lab: Lab, form: SignatureForm) -> None:
    activity = new_thread(lab, lab.bob)
    body = json.dumps(activity).encode()
    signed_for = json.dumps(new_thread(lab, lab.bob)).encode()  # the body the digest (and signature) vouch for
    headers = sign_request("POST", lab.inbox, {}, signed_for, lab.bob.signing_key, form=form)
    header = "Digest" if form == "cavage" else "Content-Digest"
    reason = f"the {header} header's sha-256 digest does not match the body"
    await refused(lab, await lab.remote.post(lab.inbox, body, headers), 401, reason, activity)
    await accepted(lab, await lab.remote.deliver(lab.bob, lab.inbox, activity, form=form), activity)


# -- who may say what --------------------------------------------------------------------------------------


@pytest.mark.parametrize("signer_name", ["carol", "dave"], ids=["neighbour on the same host", "another host"])
async def test_one_actor_cannot_sign_for_another_unless_the_author_signed_it_too(lab: Lab, signer_name: str) -> None:
    signer = lab.carol if signer_name == "carol" else lab.dave
    activity = new_thread(lab, lab.bob, context=[AS_CONTEXT, SECURITY_CONTEXT])
    response = await lab.remote.deliver(signer, lab.inbox, activity)
    await refused(lab, response, 401, f"signed by {signer.ap_id} for an activity of {lab.bob.ap_id}", activity)
    # Bob's own Linked Data signature, altered on the way: still refused.
    forwarded = ld_sign(activity, lab.bob)
    tampered = forwarded | {"object": forwarded["object"] | {"content": "<p>not what bob wrote</p>"}}
    await refused(lab, await lab.remote.deliver(signer, lab.inbox, tampered), 401, "signed by", activity)
    # Bob's own Linked Data signature, intact: the forwarded activity is believed and becomes a thread.
    row = await accepted(lab, await lab.remote.deliver(signer, lab.inbox, forwarded), activity)
    assert row.signer_key_id == signer.key_id
    assert await eventually(lambda: post_exists(lab, activity["object"]["id"]))


async def test_an_activity_id_on_another_host_than_its_actor_is_refused(lab: Lab) -> None:
    # On another address, then on bob's own address but another port (another server).
    for elsewhere in (lab.other.base_url, f"http://{lab.remote.host}:{lab.other.port}"):
        activity = new_thread(lab, lab.bob, activity_id=f"{elsewhere}/activities/{_unique()}")
        response = await lab.remote.deliver(lab.bob, lab.inbox, activity)
        await refused(lab, response, 401, "the activity's id and its actor are on different hosts", activity)
    honest = new_thread(lab, lab.bob)
    await accepted(lab, await lab.remote.deliver(lab.bob, lab.inbox, honest), honest)


async def test_an_object_on_another_host_than_its_author_is_refused(lab: Lab) -> None:
    foreign = f"{lab.other.base_url}/notes/{_unique()}"
    embedded = new_thread(lab, lab.bob, object_id=foreign)
    bare = embedded | {"id": f"{lab.remote.base_url}/activities/{_unique()}", "object": foreign}
    update = embedded | {"id": f"{lab.remote.base_url}/activities/{_unique()}", "type": "Update"}
    for activity in (embedded, bare, update):
        response = await lab.remote.deliver(lab.bob, lab.inbox, activity)
        await refused(lab, response, 401, "the object's id is on another host than its author", activity)
    assert not await post_exists(lab, foreign)
    honest = new_thread(lab, lab.bob)
    await accepted(lab, await lab.remote.deliver(lab.bob, lab.inbox, honest), honest)
    assert await eventually(lambda: post_exists(lab, honest["object"]["id"]))


async def test_a_copy_of_one_of_our_own_posts_never_overwrites_it(lab: Lab) -> None:
    before = await local_post(lab)
    forged = {
        "id": lab.thread_ap_id, "type": "Page", "name": "Pwned", "content": "<p>pwned</p>",
        "attributedTo": lab.bob.ap_id, "to": [PUBLIC, lab.group], "audience": lab.group,
    }  # fmt: skip
    alice = f"{lab.jardin.base_url}/u/alice"
    update = activity_of(lab.bob, "Update", forged)
    create = activity_of(lab.bob, "Create", forged)
    as_alice = {**activity_of(lab.bob, "Update", forged | {"attributedTo": alice}), "actor": alice}
    as_alice["id"] = f"{lab.jardin.base_url}/activities/{_unique()}"
    await refused(lab, await lab.remote.deliver(lab.bob, lab.inbox, update), 401, "another host", update)
    await refused(lab, await lab.remote.deliver(lab.bob, lab.inbox, create), 401, "another host", create)
    await refused(lab, await lab.remote.deliver(lab.bob, lab.inbox, as_alice), 401, "our own actors", as_alice)
    # The same copies, announced by a remote Group: stored (an Announce is the Group's own), then refused
    # by the worker: bob is not the post's author, and alice's activity is not believed from elsewhere.
    club = lab.remote.actor(f"club{_unique()}", kind="Group")
    wrapped = [activity_of(club, "Announce", update), activity_of(club, "Announce", as_alice)]
    for announce in wrapped:
        await accepted(lab, await lab.remote.deliver(club, lab.inbox, announce), announce)
    bobs, alices = [await settled(lab, announce["id"]) for announce in wrapped]
    assert bobs.state == ReceivedState.REFUSED and "only its author may edit" in str(bobs.outcome)
    assert alices.state == ReceivedState.REFUSED and "our own objects" in str(alices.outcome)
    assert await local_post(lab) == before
    # The honest edit, by the author of a remote post, goes through the same path and is applied.
    thread = new_thread(lab, lab.bob)
    await accepted(lab, await lab.remote.deliver(lab.bob, lab.inbox, thread), thread)
    await settled(lab, thread["id"])
    edit = activity_of(lab.bob, "Update", thread["object"] | {"content": "<p>bob edited his own</p>"})
    await accepted(lab, await lab.remote.deliver(lab.bob, lab.inbox, edit), edit)
    assert (await settled(lab, edit["id"])).state == ReceivedState.DONE
    assert "bob edited his own" in await post_html(lab, thread["object"]["id"])


# -- bodies: size, depth, contexts -------------------------------------------------------------------------


async def test_a_ten_megabyte_body_is_refused_before_it_is_read(lab: Lab) -> None:
    erin = lab.remote.actor(f"erin{_unique()}")
    activity = new_thread(lab, erin)
    activity["object"]["content"] = "<p>" + "x" * 10_000_000 + "</p>"
    body = json.dumps(activity).encode()
    headers = sign_request("POST", lab.inbox, {}, body, erin.signing_key)
    # Once first, untraced: the refusal's message loads Babel's number formats (3.5 MB) the first time.
    assert (await lab.remote.post_raw(lab.inbox, {}, b" " * 1_000_001, chunked=False)).status == 413
    started = time.monotonic()
    # The server runs in this process: what it holds in memory while refusing shows in tracemalloc's peak
    # (the 10 MB the test built are older than the trace and do not count).
    tracemalloc.start()
    try:
        declared = await lab.remote.post_raw(lab.inbox, headers, body, chunked=False)
        streamed = await lab.remote.post_raw(lab.inbox, headers, body, chunked=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    for answer in (declared, streamed):
        assert answer.status == 413, answer
        assert "larger than this forum accepts" in json.loads(answer.body)["detail"]
    assert peak < 2_500_000, f"{peak} bytes held while refusing a 10 MB body"
    assert await stored(lab, activity["id"]) == 0
    assert lab.remote.requests_for(f"/users/{erin.name}") == [], "a key was fetched for an oversized body"
    assert elapsed < 5, elapsed
    honest = new_thread(lab, erin)
    await accepted(lab, await lab.remote.deliver(erin, lab.inbox, honest), honest)


async def test_json_nested_a_thousand_deep_is_refused_before_any_fetch(lab: Lab) -> None:
    frank = lab.remote.actor(f"frank{_unique()}")
    for depth, status in ((1000, 400), (50, 202)):
        activity = new_thread(lab, frank)
        activity["object"]["nested"] = "NESTED"
        # Written by hand: json.dumps itself recurses, and gives up long before a thousand levels.
        body = json.dumps(activity).replace('"NESTED"', '{"deeper": ' * depth + '"bottom"' + "}" * depth).encode()
        response = await lab.remote.post(lab.inbox, body, sign_request("POST", lab.inbox, {}, body, frank.signing_key))
        if status == 400:
            await refused(lab, response, 400, "nests deeper than 64 levels", activity)
            assert lab.remote.requests_for(f"/users/{frank.name}") == [], "a key was fetched for a refused body"
        else:  # the same activity, nested as deep as real documents go: accepted
            await accepted(lab, response, activity)


async def test_a_number_too_large_for_any_float_is_refused_and_costs_no_one_else_their_activity(lab: Lab) -> None:
    """1e400 reads as infinity, which no JSON can say again: kept, it made PostgreSQL refuse the whole batch
    of activities committed with it, honest peers' included."""
    grace = lab.remote.actor(f"grace{_unique()}")
    poisoned = new_thread(lab, grace)
    poisoned["object"]["width"] = "HUGE"
    body = json.dumps(poisoned).replace('"HUGE"', "-1e400").encode()
    honest = [new_thread(lab, grace) for _ in range(4)]
    answers = await asyncio.gather(
        lab.remote.post(lab.inbox, body, sign_request("POST", lab.inbox, {}, body, grace.signing_key)),
        *(lab.remote.deliver(grace, lab.inbox, activity) for activity in honest),
    )
    await refused(lab, answers[0], 400, "the number -1e400 is too large", poisoned)
    for answer, activity in zip(answers[1:], honest, strict=True):
        await accepted(lab, answer, activity)


async def test_an_unknown_context_is_never_fetched(lab: Lab) -> None:
    path = f"/schemas/litepub-{_unique()}.jsonld"
    unknown = lab.remote.serve(path, {"@context": {"content": "https://evil.example/ns#notContent"}})
    alone = new_thread(lab, lab.bob, context=unknown)
    reason = "which Jardin does not know, without the ActivityStreams context"
    await refused(lab, await lab.remote.deliver(lab.bob, lab.inbox, alone), 400, reason, alone)
    # Beside the ActivityStreams context, the document is read by its plain terms, and becomes a thread.
    beside = new_thread(lab, lab.bob, context=[AS_CONTEXT, unknown])
    await accepted(lab, await lab.remote.deliver(lab.bob, lab.inbox, beside), beside)
    assert (await settled(lab, beside["id"])).state == ReceivedState.DONE
    assert beside["object"]["content"] in await post_html(lab, beside["object"]["id"])
    assert lab.remote.requests_for(path) == [], "the unknown context was fetched"


# -- slow peers, floods, forbidden addresses ---------------------------------------------------------------


async def test_slow_key_fetches_are_cut_at_the_deadline_while_others_are_served(lab: Lab) -> None:
    """Peers whose actor documents never finish (dripping a byte every half second, or answering nothing),
    more of them at once than the database pool has connections: each is refused when the client's 10 s
    deadline cuts its key fetch, and meanwhile an honest peer and the forum's own pages are served."""
    # Half drip, half say nothing; every third publishes its key apart, fast, and its owner's document slowly.
    slow = [
        lab.remote.actor(f"slow{n}x{_unique()}", separate_key=n % 3 == 0, **({"drip": 0.5} if n % 2 else {"hold": 60}))
        for n in range(SLOW)
    ]
    attacks = [new_thread(lab, actor) for actor in slow]
    started = time.monotonic()
    pending = [
        asyncio.create_task(lab.remote.deliver(actor, lab.inbox, activity))
        for actor, activity in zip(slow, attacks, strict=True)
    ]

    async def all_asked() -> bool:
        return _asked(lab.remote, slow) == SLOW

    try:
        with contextlib.suppress(AssertionError):  # how many were asked is checked below, with a clearer message
            await eventually(all_asked, timeout=3, every=0.05)
        asked = _asked(lab.remote, slow)
        waiting = time.monotonic()
        health = await lab.jardin.http.get("/healthz")
        honest = new_thread(lab, lab.bob)
        honest_answer = await lab.remote.deliver(lab.bob, lab.inbox, honest)
        waited = time.monotonic() - waiting
    finally:
        answers = await asyncio.gather(*pending, return_exceptions=True)
    elapsed = time.monotonic() - started
    assert asked == SLOW, f"{SLOW - asked} of {SLOW} key fetches had not even started after 3 s"
    assert waited < 3, f"an honest peer and /healthz waited {waited:.1f} s behind slow peers"
    assert health.status_code == 200
    await accepted(lab, honest_answer, honest)
    for answer, activity in zip(answers, attacks, strict=True):
        assert isinstance(answer, httpx.Response), answer
        await refused(lab, answer, 401, "the signing key could not be fetched", activity)
    assert 9.5 < elapsed < 15, elapsed
    for actor in slow:
        assert len(lab.remote.requests_for(f"/users/{actor.name}")) == 1
        assert len(lab.remote.requests_for(f"/keys/{actor.name}")) == actor.separate_key


def _asked(remote: Remote, actors: list[RemoteActor]) -> int:
    """How many of the actors' documents their server was asked for."""
    return sum(1 for actor in actors if remote.requests_for(f"/users/{actor.name}"))


async def test_one_instance_flooding_the_inbox_gets_429(lab: Lab) -> None:
    await eventually(lambda: queue_empty(lab), timeout=60)
    # The short-lived instances of these tests only answer their inbox: the lab's worker applies what they store
    # (a worker of theirs, stopped with them mid-batch, left rows and connections behind for the next test).
    limits = RateLimits(inbox_per_instance=5, inbox_window=60)
    async with running(
        "127.0.0.1", lab.database_url, lab.data_dir / "limited", rate_limits=limits, run_worker=False
    ) as limited:
        inbox = f"{limited.base_url}/inbox"
        for _ in range(5):
            honest = new_thread(lab, lab.bob)
            await accepted(lab, await lab.remote.deliver(lab.bob, inbox, honest), honest)
        # Bob's neighbour on the same server shares its budget.
        flood = new_thread(lab, lab.carol)
        flooded = await lab.remote.deliver(lab.carol, inbox, flood)
        await refused(lab, flooded, 429, "too many activities", flood)
        assert 0 < int(flooded.headers["retry-after"]) <= 60
        # Another server is counted on its own.
        other = new_thread(lab, lab.dave)
        await accepted(lab, await lab.remote.deliver(lab.dave, inbox, other), other)


async def test_forged_requests_do_not_spend_an_honest_peers_budget(lab: Lab) -> None:
    await eventually(lambda: queue_empty(lab), timeout=60)
    limits = RateLimits(inbox_per_instance=5, inbox_window=60)
    async with running(
        "127.0.0.1", lab.database_url, lab.data_dir / "forged", rate_limits=limits, run_worker=False
    ) as limited:
        inbox = f"{limited.base_url}/inbox"
        for _ in range(5):
            # Dave's key id, signed with someone else's key, sent by someone else: each refused.
            forged = new_thread(lab, lab.dave)
            body = json.dumps(forged).encode()
            headers = cavage_headers("POST", inbox, body, lab.bob.signing_key, key_id=lab.dave.key_id)
            await refused(lab, await lab.remote.post(inbox, body, headers), 401, "does not match", forged)
        honest = new_thread(lab, lab.dave)
        await accepted(lab, await lab.other.deliver(lab.dave, inbox, honest), honest)


async def test_a_key_on_a_private_address_is_refused_before_any_connection(lab: Lab) -> None:
    await eventually(lambda: queue_empty(lab), timeout=60)
    async with (
        Remote("127.0.0.1") as loopback,
        Listener("127.0.0.2") as tripwire,
        running(
            "127.0.0.1", lab.database_url, lab.data_dir / "guarded", federation_allow_private=False, run_worker=False
        ) as guarded,
    ):
        inbox = f"{guarded.base_url}/inbox"
        key = lab.bob.private_key
        attackers = [
            (loopback.actor("mallory"), "only https:// is allowed"),  # what a lab peer looks like
            (RemoteActor(f"https://127.0.0.2:{tripwire.port}", "eve", key), "refused address 127.0.0.2 (loopback)"),
            (RemoteActor(f"https://localhost:{tripwire.port}", "eve", key), "(loopback)"),
        ]
        for actor, reason in attackers:
            activity = new_thread(lab, actor)
            response = await lab.remote.deliver(actor, inbox, activity)
            await refused(lab, response, 401, reason, activity)
        assert loopback.requests == []
        assert tripwire.connections == []
        # Bob's key is known already (fetched when the lab started): his delivery needs no connection at all.
        before = len(lab.remote.requests)
        honest = new_thread(lab, lab.bob)
        await accepted(lab, await lab.remote.deliver(lab.bob, inbox, honest), honest)
        assert len(lab.remote.requests) == before


# -- helpers -----------------------------------------------------------------------------------------------


def _unique() -> str:
    return uuid.uuid4().hex[:12]


def new_thread(
    lab: Lab,
    author: RemoteActor,
    *,
    object_id: str | None = None,
    activity_id: str | None = None,
    context: Any = AS_CONTEXT,
) -> dict[str, Any]:
    """A Create of a Page by `author` opening a thread in the lab's category."""
    key = _unique()
    page = {
        "id": object_id or f"{author.base_url}/notes/{key}",
        "type": "Page",
        "attributedTo": author.ap_id,
        "name": f"Thread {key}",
        "content": f"<p>Body {key}</p>",
        "to": [PUBLIC, lab.group],
        "audience": lab.group,
    }
    return {
        "@context": context,
        "id": activity_id or f"{author.base_url}/activities/{key}",
        "type": "Create",
        "actor": author.ap_id,
        "to": [PUBLIC, lab.group],
        "object": page,
    }


def activity_of(actor: RemoteActor, kind: str, obj: Any) -> dict[str, Any]:
    return {
        "@context": AS_CONTEXT,
        "id": f"{actor.base_url}/activities/{_unique()}",
        "type": kind,
        "actor": actor.ap_id,
        "to": [PUBLIC],
        "object": obj,
    }


async def refused(lab: Lab, response: httpx.Response, status: int, reason: str, activity: dict[str, Any]) -> None:
    """The request was answered `status` with `reason` in its detail, and nothing of it was stored."""
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"], response.json()["detail"]
    assert await stored(lab, activity["id"]) == 0
    obj = activity.get("object")
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"] != lab.thread_ap_id:
        assert not await post_exists(lab, obj["id"])


async def accepted(lab: Lab, response: httpx.Response, activity: dict[str, Any]) -> ReceivedActivity:
    """The request was answered 202 and its activity stored once."""
    assert response.status_code == 202, response.text
    async with lab.jardin.forum.read() as session:
        rows = (await session.scalars(select(ReceivedActivity).where(ReceivedActivity.ap_id == activity["id"]))).all()
    assert len(rows) == 1
    return rows[0]


async def stored(lab: Lab, activity_id: str) -> int:
    async with lab.jardin.forum.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(ReceivedActivity).where(ReceivedActivity.ap_id == activity_id)
        )
    return int(count or 0)


async def settled(lab: Lab, activity_id: str) -> ReceivedActivity:
    """The row of a received activity once the worker has processed it."""

    async def processed() -> ReceivedActivity | None:
        async with lab.jardin.forum.read() as session:
            row = await session.scalar(select(ReceivedActivity).where(ReceivedActivity.ap_id == activity_id))
        return row if row is not None and row.state in SETTLED else None

    row: ReceivedActivity = await eventually(processed)
    return row


async def queue_empty(lab: Lab) -> bool:
    async with lab.jardin.forum.read() as session:
        waiting = await session.scalar(
            select(func.count())
            .select_from(ReceivedActivity)
            .where(ReceivedActivity.state.in_([ReceivedState.QUEUED, ReceivedState.PROCESSING]))
        )
    return not waiting


async def post_exists(lab: Lab, object_id: str) -> bool:
    async with lab.jardin.forum.read() as session:
        post = await session.scalar(select(Post.id).where(Post.ap_id == object_id))
        thread = await session.scalar(select(Thread.id).where(Thread.ap_id == object_id))
    return post is not None or thread is not None


async def post_html(lab: Lab, object_id: str) -> str:
    async with lab.jardin.forum.read() as session:
        html = await session.scalar(
            select(Post.html)
            .join(Thread, Thread.id == Post.thread_id)
            .where((Post.ap_id == object_id) | ((Thread.ap_id == object_id) & (Post.position == 1)))
        )
    return str(html)


async def local_post(lab: Lab) -> tuple[str, str, str, int]:
    """Alice's thread as members see it: title, Markdown source, HTML, number of edits."""
    response = await lab.jardin.api(lab.alice_token, "GET", f"/threads/{lab.thread_id}")
    assert response.status_code == 200, response.text
    thread = response.json()
    first = thread["posts"][0]
    async with lab.jardin.forum.read() as session:
        edits = await session.scalar(select(Post.revision_count).where(Post.id == first["id"]))
    return thread["title"], first["body"], first["html"], int(edits or 0)


def _http_date(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")

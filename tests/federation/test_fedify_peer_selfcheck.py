"""Self-check of the Fedify peer harness: two independent Fedify instances on loopback follow, accept, post and reply
to each other over http with verified HTTP signatures in both forms, and the peer refuses what is not signed by the
actor it claims — so a Jardin test that sees the peer accept an activity knows the signature was checked."""

from __future__ import annotations

import base64
import hashlib
import json
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.federation.peers import FedifyPeer, require_fedify

CAVAGE = "draft-cavage-http-signatures-12"


async def test_two_fedify_peers_follow_accept_post_and_reply() -> None:
    install = require_fedify()
    async with (
        FedifyPeer("127.0.0.2", install=install) as a,
        FedifyPeer("127.0.0.3", first_knock=CAVAGE, install=install) as b,
    ):
        follow = await b.follow(a.handle)
        received_follow = await a.wait_for(lambda r: r["id"] == follow["id"])
        assert received_follow["type"] == "Follow"
        assert received_follow["verified"] is True
        assert received_follow["actor"] == b.actor_id
        assert received_follow["object"]["id"] == a.actor_id
        # B was told to knock with draft-cavage first; A signs with RFC 9421 first. Both verify.
        assert received_follow["signature"] == "draft-cavage"
        assert received_follow["key_id"].startswith(b.actor_id + "#")

        accept = await b.wait_for(lambda r: r["type"] == "Accept")
        assert accept["verified"] is True
        assert accept["actor"] == a.actor_id
        assert accept["object"]["id"] == follow["id"]
        assert accept["signature"] == "rfc9421"
        assert await a.followers() == [b.actor_id]
        assert (await b.following())[a.actor_id]["state"] == "accepted"

        note = await a.note("<p>Hello from A</p>")
        to_follower = await b.wait_for(lambda r: r["type"] == "Create" and r["object"]["id"] == note["object"])
        assert to_follower["verified"] is True
        assert to_follower["object"]["content"] == "<p>Hello from A</p>"

        reply = await b.reply(note["object"], "<p>Hello back</p>")
        received_reply = await a.wait_for(lambda r: r["id"] == reply["id"])
        assert received_reply["verified"] is True
        assert received_reply["object"]["type"] == "Note"
        assert received_reply["object"]["inReplyTo"] == note["object"]
        assert received_reply["object"]["attributedTo"] == b.actor_id
        assert received_reply["object"]["content"] == "<p>Hello back</p>"


async def test_unsigned_and_forged_deliveries_are_refused_and_recorded_unverified() -> None:
    install = require_fedify()
    async with FedifyPeer("127.0.0.2", install=install) as a, FedifyPeer("127.0.0.3", install=install) as b:
        inbox = f"{a.base_url}/inbox"
        follow = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{b.base_url}/forged/1",
            "type": "Follow",
            "actor": b.actor_id,
            "object": a.actor_id,
        }
        body = json.dumps(follow).encode()
        async with httpx.AsyncClient(trust_env=False) as http:
            unsigned = await http.post(inbox, content=body, headers={"Content-Type": "application/activity+json"})
            # Signed in B's name with a key that is not B's: A fetches B's real key and the signature fails.
            forged = await http.post(
                inbox, content=body, headers=_cavage_headers(inbox, body, b.actor_id + "#main-key")
            )

        assert unsigned.status_code == 401
        assert forged.status_code == 401
        assert [(r["verified"], r["reason"]) for r in await a.received()] == [
            (False, "noSignature"),
            (False, "invalidSignature"),
        ]
        assert await a.followers() == []
        assert await b.received() == []


def _cavage_headers(url: str, body: bytes, key_id: str) -> dict[str, str]:
    """draft-cavage headers for a POST, signed with a freshly made RSA key that nobody published."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    target = urlsplit(url)
    date = formatdate(usegmt=True)
    digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    signed = f"(request-target): post {target.path}\nhost: {target.netloc}\ndate: {date}\ndigest: {digest}"
    signature = base64.b64encode(key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return {
        "Content-Type": "application/activity+json",
        "Date": date,
        "Digest": digest,
        "Signature": f'keyId="{key_id}",algorithm="rsa-sha256",headers="(request-target) host date digest",'
        f'signature="{signature}"',
    }

"""RsaSignature2017 (Mastodon's Linked Data signatures): made by an independent signer, a real Friendica
activity, tampering, foreign keys, unknown contexts, and blank-node documents that would take minutes."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyld import jsonld as pyld_jsonld

from activitypub.protocol.contexts import OfflineLoader
from activitypub.protocol.jsonld import parse_json
from activitypub.protocol.ld_signatures import ld_signature_creator, verify_rsa_signature_2017
from activitypub.protocol.vocabulary import PUBLIC

AS = "https://www.w3.org/ns/activitystreams"
SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "fediverse-samples"
UNKNOWN = "https://evil.example/schemas/litepub-0.1.jsonld"


def sign_like_mastodon(document: dict[str, Any], key: rsa.RSAPrivateKey, creator: str) -> dict[str, Any]:
    """An independent signer following Mastodon's ActivityPub::LinkedDataSignature#sign!."""
    loader = OfflineLoader()

    def canonical_hash(value: dict[str, Any]) -> str:
        options = {"algorithm": "URDNA2015", "format": "application/n-quads", "documentLoader": loader}
        return hashlib.sha256(pyld_jsonld.normalize(value, options).encode()).hexdigest()

    options = {"type": "RsaSignature2017", "creator": creator, "created": "2024-05-01T10:00:00Z"}
    signed_options = {"@context": "https://w3id.org/identity/v1", "creator": creator, "created": options["created"]}
    to_sign = canonical_hash(signed_options) + canonical_hash(document)
    value = base64.b64encode(key.sign(to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return {**document, "signature": {**options, "signatureValue": value}}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def test_a_mastodon_style_signature_verifies_and_names_its_key(key: rsa.RSAPrivateKey) -> None:
    activity = {
        "@context": [AS, "https://w3id.org/security/v1"],
        "id": "https://a.example/activities/1",
        "type": "Create",
        "actor": "https://a.example/u/ana",
        "object": {
            "@context": AS,
            "id": "https://a.example/notes/1",
            "type": "Note",
            "attributedTo": "https://a.example/u/ana",
            "content": "<p>hello</p>",
            "to": [PUBLIC],
        },
    }
    signed = sign_like_mastodon(activity, key, "https://a.example/u/ana#main-key")
    assert ld_signature_creator(signed) == "https://a.example/u/ana#main-key"
    assert verify_rsa_signature_2017(signed, pem(key))


def test_a_tampered_or_foreign_signature_does_not_verify(key: rsa.RSAPrivateKey) -> None:
    activity = {"@context": AS, "id": "https://a.example/a/1", "type": "Like", "actor": "https://a.example/u/ana"}
    signed = sign_like_mastodon(activity | {"object": "https://b.example/1"}, key, "https://a.example/u/ana#k")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert verify_rsa_signature_2017(signed, pem(key))
    assert not verify_rsa_signature_2017(signed | {"object": "https://b.example/2"}, pem(key))
    assert not verify_rsa_signature_2017(
        signed | {"signature": signed["signature"] | {"created": "2024-05-02T10:00:00Z"}}, pem(key)
    )
    assert not verify_rsa_signature_2017(signed, pem(other))
    assert not verify_rsa_signature_2017(signed | {"@context": [AS, UNKNOWN]}, pem(key))
    assert not verify_rsa_signature_2017(activity, pem(key))
    assert ld_signature_creator(activity) is None


def test_a_signed_document_naming_blank_nodes_is_not_canonicalized(key: rsa.RSAPrivateKey) -> None:
    # Eight blank nodes that all point at each other cost URDNA2015 about a minute.
    clique = [{"id": f"_:b{i}", "to": [f"_:b{j}" for j in range(8) if j != i]} for i in range(8)]
    activity = {"@context": AS, "id": "https://a.example/a/1", "type": "Note", "tag": clique}
    signature = {"type": "RsaSignature2017", "creator": "https://a.example/u/ana#k", "signatureValue": "AAAA"}
    started = time.monotonic()
    assert not verify_rsa_signature_2017(activity | {"signature": signature}, pem(key))
    assert time.monotonic() - started < 1


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared fediverse samples are not on this machine")
def test_a_real_friendica_signature_verifies_with_its_authors_published_key() -> None:
    activity = parse_json((SAMPLES / "friendica/activities/create_note.json").read_bytes())
    author = parse_json((SAMPLES / "friendica/objects/person_1.json").read_bytes())
    assert ld_signature_creator(activity) == author["publicKey"]["id"]
    assert verify_rsa_signature_2017(activity, author["publicKey"]["publicKeyPem"])
    tampered = activity | {"object": activity["object"] | {"content": "changed"}}
    assert not verify_rsa_signature_2017(tampered, author["publicKey"]["publicKeyPem"])

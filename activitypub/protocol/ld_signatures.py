"""Mastodon-style `RsaSignature2017` Linked Data signatures: who made one, and whether it holds.

A relayed or forwarded activity is believed from a server that did not author it only when it carries its
author's own signature (`activitypub.inbox`). The signed bytes are hashes of URDNA2015 canonical forms, which
pyld computes over the bundled contexts only: nothing is ever fetched to check a signature.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyld import jsonld as pyld_jsonld
from pyld.context_resolver import ContextResolver

from activitypub.protocol.contexts import OfflineLoader
from activitypub.protocol.jsonld import BoundedCache, DocumentError, DocumentLoader, jsonld_reason
from activitypub.protocol.vocabulary import IDENTITY_CONTEXT

_NOT_SIGNED = frozenset({"type", "id", "signatureValue"})  # left out of the signed options (Mastodon)


def ld_signature_creator(document: Mapping[str, Any]) -> str | None:
    """The key id (`signature.creator`) of the document's `RsaSignature2017` signature, if it has one."""
    signature = document.get("signature")
    if isinstance(signature, dict) and signature.get("type") == "RsaSignature2017":
        creator = signature.get("creator")
        return creator if isinstance(creator, str) else None
    return None


def verify_rsa_signature_2017(
    document: Mapping[str, Any], public_key_pem: str | bytes, *, loader: DocumentLoader | None = None
) -> bool:
    """Whether the document carries a valid `RsaSignature2017` made with the key, as Mastodon makes them
    (`ActivityPub::LinkedDataSignature`): RSA-SHA256 over the hex SHA-256 of the URDNA2015 form of the
    signature options (without `type`, `id`, `signatureValue`, in the identity/v1 context) followed by the hex
    SHA-256 of the URDNA2015 form of the document without its signature. Contexts come from the bundled files
    only; a document that cannot be canonicalized offline does not verify, nor does one that names blank nodes
    (`_:…`): linked blank nodes make URDNA2015 take exponential time (a 7-node clique costs 5 seconds)."""
    signature = document.get("signature")
    if ld_signature_creator(document) is None or not isinstance(signature, dict) or _names_blank_nodes(document):
        return False
    value = signature.get("signatureValue")
    if not isinstance(value, str):
        return False
    try:
        key = serialization.load_pem_public_key(
            public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        )
        payload = ld_signature_payload(document, loader=loader)
        raw = base64.b64decode(value)
    except (ValueError, TypeError, DocumentError):
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def ld_signature_payload(document: Mapping[str, Any], *, loader: DocumentLoader | None = None) -> bytes:
    """The bytes an `RsaSignature2017` signs: hash(options) + hash(document without signature), hex digests."""
    signature = document.get("signature")
    signed = signature.items() if isinstance(signature, dict) else ()
    signature_options = {k: v for k, v in signed if k not in _NOT_SIGNED} | {"@context": IDENTITY_CONTEXT}
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    chosen = loader if loader is not None else OfflineLoader()
    # A resolver of our own keeps pyld from consulting or filling its process-wide context cache.
    pyld_options = {
        "algorithm": "URDNA2015",
        "format": "application/n-quads",
        "documentLoader": chosen,
        "base": None,
        "contextResolver": ContextResolver(BoundedCache(16), chosen),
    }
    hashes_hex = _urdna2015_sha256(signature_options, pyld_options) + _urdna2015_sha256(unsigned, pyld_options)
    return hashes_hex.encode("ascii")


def _urdna2015_sha256(value: Mapping[str, Any], options: dict[str, Any]) -> str:
    try:
        nquads = pyld_jsonld.normalize(dict(value), options)
    except Exception as error:  # untrusted input: any failure of pyld means the signature cannot be checked
        raise DocumentError(jsonld_reason(error)) from None
    return hashlib.sha256(nquads.encode("utf-8")).hexdigest()


def _names_blank_nodes(document: Mapping[str, Any]) -> bool:
    stack: list[Any] = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if value.startswith("_:"):
                return True
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False

"""HTTP signatures of federation requests: signing outgoing ones, verifying incoming ones.

Two forms are spoken. draft-cavage (`Signature: keyId=…,algorithm=…,headers=…,signature=…`) is what Mastodon,
Lemmy and most of the fediverse send and expect; RFC 9421 (`Signature-Input` + `Signature`) is what Fedify tries
first. Both sign the method, the target, the date and, for requests with a body, a digest of it (digests.py).

Verification is a pure function of the request as received and the claimed key's PEM: it refuses with a
SignatureError whose reason says, in English, what is wrong. Finding the PEM for a keyId is the caller's job
(`signature_key_id` tells which key a request claims). Loaded keys are cached: a PEM costs more than a verify.
Reading the signature headers, and the signature base both forms sign, are `signature_claims`'.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TypeAlias

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from activitypub.protocol.digests import (
    DigestError,
    Parameters,
    check_content_digest,
    check_digest,
    content_digest_header,
    digest_header,
    serialize_bytes,
    serialize_inner_list,
)
from activitypub.protocol.signature_claims import (
    Algorithm,
    SignatureError,
    SignatureForm,
    as_utc,
    authority,
    cavage_message,
    claimed_time,
    header_value,
    integer_param,
    normalize_fields,
    read_claim,
    rfc9421_message,
)

__all__ = [
    "HttpSignatureAuth",
    "PublicKey",
    "SignatureError",
    "SignatureForm",
    "SigningKey",
    "VerifiedSignature",
    "content_digest_header",
    "digest_header",
    "load_public_key",
    "sign_request",
    "signature_key_id",
    "verify_request",
]

PublicKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192  # a bigger key makes every verify slower for no security anyone needs

_BODYLESS = frozenset(("GET", "HEAD"))
_PKCS1 = padding.PKCS1v15()
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)  # RFC 9421 section 3.3.1
_SHA256 = hashes.SHA256()
_SHA512 = hashes.SHA512()


# For each form and whether the method is GET/HEAD: what the signature must cover, each as alternatives.
_TARGETS = ("@target-uri", "@path", "@request-target")
_REQUIRED: dict[tuple[SignatureForm, bool], list[tuple[str, ...]]] = {
    ("cavage", True): [("(request-target)",), ("host",)],
    ("cavage", False): [("(request-target)",), ("digest",)],
    ("rfc9421", True): [("@method",), _TARGETS, ("@authority", "@target-uri", "host")],
    ("rfc9421", False): [("@method",), _TARGETS, ("content-digest",)],
}


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What a valid signature proves: that the holder of `key_id` made this request at `created` (UTC)."""

    key_id: str
    form: SignatureForm
    created: datetime


@dataclass(frozen=True)
class SigningKey:
    """A key to sign with; its PEM is loaded once, when the SigningKey is made (loading costs more than signing)."""

    key_id: str
    private_key_pem: str = field(repr=False)
    _private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key_id or any(not 0x21 <= ord(c) <= 0x7E or c in '"\\' for c in self.key_id):
            raise ValueError("a key id must be printable ASCII without spaces, quotes or backslashes")
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
                raise ValueError(f"an RSA signing key needs {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, not {key.key_size}")
        elif not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("only RSA and Ed25519 keys can sign requests")
        object.__setattr__(self, "_private_key", key)

    def sign(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 for RSA keys (what every peer verifies), Ed25519 otherwise."""
        if isinstance(self._private_key, rsa.RSAPrivateKey):
            return self._private_key.sign(message, _PKCS1, _SHA256)
        return self._private_key.sign(message)


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    key: SigningKey,
    *,
    form: SignatureForm = "cavage",
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers that sign this request: Host, Date, Digest or Content-Digest (with a body), Signature, and
    Signature-Input for RFC 9421. A Host already in `headers` is signed as it is; otherwise the URL's (its port
    only when not the scheme's default, as httpx sends it). Methods other than GET and HEAD always carry a digest."""
    scheme, netloc, target = _url_parts(url)
    host = next((value for name, value in headers.items() if name.lower() == "host"), netloc)
    return _sign(method.upper(), scheme, host, target, body, key, form, now)


@functools.lru_cache(maxsize=8192)
def _url_parts(url: str) -> tuple[str, str, str]:
    """(scheme, host and port as httpx writes the Host header, request target) of `url`; cached, as deliveries sign
    for the same inboxes again and again. httpx.InvalidURL for a URL it cannot read."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.netloc.decode("ascii"), parsed.raw_path.decode("ascii")


class HttpSignatureAuth(httpx.Auth):
    """Signs each outgoing httpx request (redirect hops included) in place, over the Host header httpx sends."""

    requires_request_body = True

    def __init__(self, key: SigningKey, form: SignatureForm = "cavage") -> None:
        self.key = key
        self.form: SignatureForm = form

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = request.url
        host = request.headers.get("host") or url.netloc.decode("ascii")
        signed = _sign(request.method.upper(), url.scheme, host, url.raw_path.decode("ascii"), request.content,
                       self.key, self.form, None)  # fmt: skip
        request.headers.update(signed)
        yield request


@functools.lru_cache(maxsize=4096)
def load_public_key(pem: str) -> PublicKey:
    """The key in `pem` (SubjectPublicKeyInfo or PKCS#1), cached by its text; SignatureError if unusable."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError("the public key is not a PEM public key this server can read") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise SignatureError(f"the RSA key has {key.key_size} bits, fewer than the {MIN_RSA_BITS} required")
        if key.key_size > MAX_RSA_BITS:
            raise SignatureError(f"the RSA key has {key.key_size} bits, more than the {MAX_RSA_BITS} accepted")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise SignatureError("the public key is neither RSA nor Ed25519")


def signature_key_id(headers: Mapping[str, str]) -> tuple[str, SignatureForm]:
    """The key id a request claims, and its signature's form, parsed without verifying anything.

    Raises SignatureError for an unsigned request, a malformed signature or an unsupported algorithm, so that no
    key is fetched for a request that would be refused anyway."""
    claim = read_claim(normalize_fields(headers))
    return claim.key_id, claim.form


def verify_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    public_key_pem: str,
    *,
    now: datetime | None = None,
    max_age: float = 3600,
    max_future: float = 300,
    scheme: str | None = None,
) -> VerifiedSignature:
    """Check that the request (`target`: path and query as received) is signed by the key in `public_key_pem`.

    Refuses, with SignatureError, a request that is unsigned or malformed; a signature that does not cover the
    method and target, the time, the host of a GET or the digest of a body; a time older than `max_age` or more
    than `max_future` seconds ahead of `now`; a digest that does not match `body`; an unsupported algorithm; a
    false signature. `scheme` is the one the peer used, for RFC 9421's `@target-uri`; None tries https, then http.
    """
    fields = normalize_fields(headers)
    method = method.upper()
    claim = read_claim(fields)
    covers = set(claim.covered)
    for alternatives in _REQUIRED[claim.form, method in _BODYLESS]:
        if covers.isdisjoint(alternatives):
            raise SignatureError(f"a {method} signature must cover {' or '.join(alternatives)}")
    signed_at = claimed_time(claim, covers, fields)
    moment = time.time() if now is None else as_utc(now).timestamp()
    if signed_at < moment - max_age:
        raise SignatureError(f"the signature is too old: made {moment - signed_at:.0f} s ago, over {max_age:.0f} s")
    if signed_at > moment + max_future:
        raise SignatureError(f"the signature is dated {signed_at - moment:.0f} s ahead, over {max_future:.0f} s")
    expires = integer_param(claim, "expires")
    if expires is not None and expires < moment:
        raise SignatureError("the signature has expired")
    for name, check in (("digest", check_digest), ("content-digest", check_content_digest)):
        if name in covers:
            try:
                check(header_value(fields, name), body)
            except DigestError as error:
                raise SignatureError(str(error)) from None
    key = load_public_key(public_key_pem)
    kind = claim.algorithm or ("rsa-v1_5-sha256" if isinstance(key, rsa.RSAPublicKey) else "ed25519")
    if (kind == "ed25519") != isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"the signature algorithm {kind} does not fit the key's type")
    messages: Iterable[str]
    if claim.form == "cavage":
        messages = [cavage_message(claim, method, target, fields)]
    else:
        attempts = (
            [scheme.lower()] if scheme else ["https", "http"] if covers & {"@target-uri", "@scheme"} else ["https"]
        )
        messages = (rfc9421_message(claim, method, target, fields, attempt) for attempt in attempts)
    for message in messages:
        if _signature_holds(key, kind, claim.signature, message.encode()):
            return VerifiedSignature(claim.key_id, claim.form, datetime.fromtimestamp(signed_at, UTC))
    raise SignatureError("the signature does not match the request and the key")


# --- signing -----------------------------------------------------------------------------------------------------


def _sign(
    method: str, scheme: str, host: str, target: str, body: bytes | None, key: SigningKey, form: SignatureForm,
    now: datetime | None,
) -> dict[str, str]:  # fmt: skip
    moment = as_utc(now)
    date = format_datetime(moment, usegmt=True)
    signed = {"Host": host, "Date": date}
    with_digest = method not in _BODYLESS or bool(body)
    ed = isinstance(key._private_key, ed25519.Ed25519PrivateKey)
    if form == "cavage":
        lines = [f"(request-target): {method.lower()} {target}", f"host: {host}", f"date: {date}"]
        if with_digest:
            signed["Digest"] = digest_header(body or b"")
            lines.append(f"digest: {signed['Digest']}")
        signature = base64.b64encode(key.sign("\n".join(lines).encode())).decode("ascii")
        covered = " ".join(line.partition(":")[0] for line in lines)
        algorithm = "hs2019" if ed else "rsa-sha256"
        signed["Signature"] = (
            f'keyId="{key.key_id}",algorithm="{algorithm}",headers="{covered}",signature="{signature}"'
        )
        return signed
    if form != "rfc9421":
        raise ValueError(f"unknown signature form {form!r}")
    values = {"@method": method, "@target-uri": f"{scheme}://{authority(host, scheme)}{target}"}
    if with_digest:
        values["content-digest"] = signed["Content-Digest"] = content_digest_header(body or b"")
    values["date"] = date
    params: Parameters = {"created": int(moment.timestamp()), "keyid": key.key_id}
    params["alg"] = "ed25519" if ed else "rsa-v1_5-sha256"
    signature_params = serialize_inner_list([(name, {}) for name in values], params)
    base = "".join(f'"{name}": {value}\n' for name, value in values.items())
    signature = serialize_bytes(key.sign(f'{base}"@signature-params": {signature_params}'.encode()))
    signed["Signature-Input"] = f"sig1={signature_params}"
    signed["Signature"] = f"sig1={signature}"
    return signed


def _signature_holds(key: PublicKey, algorithm: Algorithm, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif algorithm == "rsa-pss-sha512":
            key.verify(signature, message, _PSS, _SHA512)
        else:
            key.verify(signature, message, _PKCS1, _SHA256)
    except InvalidSignature:
        return False
    return True

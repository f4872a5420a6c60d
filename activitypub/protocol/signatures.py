"""HTTP signatures of federation requests: signing outgoing ones, verifying incoming ones.

Two forms are spoken. draft-cavage (`Signature: keyId=…,algorithm=…,headers=…,signature=…`) is what Mastodon,
Lemmy and most of the fediverse send and expect; RFC 9421 (`Signature-Input` + `Signature`) is what Fedify tries
first. Both sign the method, the target, the date and, for requests with a body, a digest of it (digests.py).

Verification is a pure function of the request as received and the claimed key's PEM: it refuses with a
SignatureError whose reason says, in English, what is wrong. Finding the PEM for a keyId is the caller's job
(`signature_key_id` tells which key a request claims). Loaded keys are cached: a PEM costs more than a verify.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Literal, NamedTuple, TypeAlias, get_args

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from activitypub.protocol.digests import (
    BareItem,
    DigestError,
    Parameters,
    StructuredFieldError,
    Token,
    check_content_digest,
    check_digest,
    content_digest_header,
    digest_header,
    parse_dictionary,
    serialize_bytes,
    serialize_inner_list,
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

SignatureForm: TypeAlias = Literal["cavage", "rfc9421"]
PublicKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192  # a bigger key makes every verify slower for no security anyone needs

_Algorithm: TypeAlias = Literal["rsa-v1_5-sha256", "rsa-pss-sha512", "ed25519"]
_ALGORITHMS: dict[str, _Algorithm] = {name: name for name in get_args(_Algorithm)}  # RFC 9421 names we verify
_BODYLESS = frozenset(("GET", "HEAD"))
_PKCS1 = padding.PKCS1v15()
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)  # RFC 9421 section 3.3.1
_SHA256 = hashes.SHA256()
_SHA512 = hashes.SHA512()
_CAVAGE_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([0-9]+))\s*')
_CAVAGE_HEADER = re.compile(r'\s*[A-Za-z]+\s*=\s*(?:"[^"]*"|[0-9]+)\s*(?:,\s*[A-Za-z]+\s*=\s*(?:"[^"]*"|[0-9]+)\s*)*,?')
_IMF_FIXDATE = re.compile(r"[A-Za-z]{3}, (\d\d) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT")
_MONTHS = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
           "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}  # fmt: skip
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


class SignatureError(Exception):
    """A request whose signature is missing, malformed, stale or false; `reason` says which, in English."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    claim = _claim(_normalize(headers))
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
    fields = _normalize(headers)
    method = method.upper()
    claim = _claim(fields)
    covers = set(claim.covered)
    for alternatives in _REQUIRED[claim.form, method in _BODYLESS]:
        if covers.isdisjoint(alternatives):
            raise SignatureError(f"a {method} signature must cover {' or '.join(alternatives)}")
    signed_at = _signed_at(claim, covers, fields)
    moment = time.time() if now is None else _utc(now).timestamp()
    if signed_at < moment - max_age:
        raise SignatureError(f"the signature is too old: made {moment - signed_at:.0f} s ago, over {max_age:.0f} s")
    if signed_at > moment + max_future:
        raise SignatureError(f"the signature is dated {signed_at - moment:.0f} s ahead, over {max_future:.0f} s")
    expires = _integer_param(claim, "expires")
    if expires is not None and expires < moment:
        raise SignatureError("the signature has expired")
    for name, check in (("digest", check_digest), ("content-digest", check_content_digest)):
        if name in covers:
            try:
                check(_header(fields, name), body)
            except DigestError as error:
                raise SignatureError(str(error)) from None
    key = load_public_key(public_key_pem)
    kind = claim.algorithm or ("rsa-v1_5-sha256" if isinstance(key, rsa.RSAPublicKey) else "ed25519")
    if (kind == "ed25519") != isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"the signature algorithm {kind} does not fit the key's type")
    messages: Iterable[str]
    if claim.form == "cavage":
        messages = [_cavage_message(claim, method, target, fields)]
    else:
        attempts = (
            [scheme.lower()] if scheme else ["https", "http"] if covers & {"@target-uri", "@scheme"} else ["https"]
        )
        messages = (_rfc9421_message(claim, method, target, fields, attempt) for attempt in attempts)
    for message in messages:
        if _signature_holds(key, kind, claim.signature, message.encode()):
            return VerifiedSignature(claim.key_id, claim.form, datetime.fromtimestamp(signed_at, UTC))
    raise SignatureError("the signature does not match the request and the key")


# --- reading signatures ------------------------------------------------------------------------------------------


class _Claim(NamedTuple):
    """What a request's signature headers say, parsed but not yet believed."""

    form: SignatureForm
    key_id: str
    covered: tuple[str, ...]
    params: Mapping[str, BareItem]
    algorithm: _Algorithm | None
    signature: bytes


# For each form and whether the method is GET/HEAD: what the signature must cover, each as alternatives.
_TARGETS = ("@target-uri", "@path", "@request-target")
_REQUIRED: dict[tuple[SignatureForm, bool], list[tuple[str, ...]]] = {
    ("cavage", True): [("(request-target)",), ("host",)],
    ("cavage", False): [("(request-target)",), ("digest",)],
    ("rfc9421", True): [("@method",), _TARGETS, ("@authority", "@target-uri", "host")],
    ("rfc9421", False): [("@method",), _TARGETS, ("content-digest",)],
}


def _claim(fields: dict[str, str]) -> _Claim:
    return _claim_of(fields.get("signature-input"), fields.get("signature"))


@functools.lru_cache(maxsize=64)  # an inbox reads each request's claim twice: to find the key, then to verify
def _claim_of(signature_input: str | None, signature: str | None) -> _Claim:
    if signature_input is not None:
        return _rfc9421_claim(signature_input, signature)
    if signature is not None:
        return _cavage_claim(signature)
    raise SignatureError("the request is not signed: it has no Signature header")


def _cavage_claim(value: str) -> _Claim:
    if not _CAVAGE_HEADER.fullmatch(value):
        raise SignatureError('the Signature header is malformed: it is not a list of name="value" pairs')
    pairs = _CAVAGE_PARAM.findall(value)
    params = {name.lower(): quoted or number for name, quoted, number in pairs}
    if len(params) != len(pairs):
        raise SignatureError("the Signature header names a parameter twice")
    if not params.get("keyid"):
        raise SignatureError("the Signature header has no keyId")
    algorithm = params.get("algorithm", "hs2019").lower()
    if algorithm not in ("rsa-sha256", "hs2019"):
        raise SignatureError(f"the signature algorithm {algorithm!r} is not supported (rsa-sha256 and hs2019 are)")
    # draft-cavage-12 makes `(created)` the default; older drafts said `date`. Neither is enough on its own.
    covered = tuple(params.get("headers", "(created)").lower().split())
    signature = _base64(params.get("signature", ""))
    return _Claim(
        "cavage", params["keyid"], covered, params, "rsa-v1_5-sha256" if algorithm != "hs2019" else None, signature
    )


def _rfc9421_claim(signature_input: str, signature_field: str | None) -> _Claim:
    if signature_field is None:
        raise SignatureError("the request has a Signature-Input header but no Signature header")
    try:
        inputs = parse_dictionary(signature_input, "Signature-Input")
        signatures = parse_dictionary(signature_field, "Signature")
    except StructuredFieldError as error:
        raise SignatureError(str(error)) from None
    if not inputs:
        raise SignatureError("the Signature-Input header is empty")
    # The first signature is the one verified: a peer signing a request for us sends one.
    label, (components, params) = next(iter(inputs.items()))
    signature = signatures.get(label, (None, {}))[0]
    if not isinstance(components, list) or not isinstance(signature, bytes):
        raise SignatureError(f"the Signature-Input and Signature headers do not both describe signature {label}")
    key_id = params.get("keyid")
    if not isinstance(key_id, str) or not key_id:
        raise SignatureError(f"the Signature-Input header's {label} has no keyid")
    alg = params.get("alg")
    algorithm = _ALGORITHMS.get(alg) if isinstance(alg, str) else None
    if alg is not None and algorithm is None:
        raise SignatureError(f"the signature algorithm {alg!r} is not supported")
    covered: list[str] = []
    for name, component_params in components:
        if not isinstance(name, str) or isinstance(name, Token) or component_params:
            raise SignatureError(f"the signature covers {name!r} in a form this server does not support")
        covered.append(name)
    if len(set(covered)) != len(covered):
        raise SignatureError("the signature covers a component twice")
    return _Claim("rfc9421", key_id, tuple(covered), params, algorithm, signature)


def _signed_at(claim: _Claim, covers: set[str], fields: dict[str, str]) -> float:
    created = _integer_param(claim, "created")
    if claim.form == "cavage" and "(created)" in covers:
        if created is None:
            raise SignatureError("the signature covers (created) but has no created parameter")
        return float(created)
    if claim.form == "rfc9421" and created is not None:
        return float(created)
    if "date" in covers:
        return _http_date(_header(fields, "date"))
    what = "date or (created)" if claim.form == "cavage" else "date, or have a created parameter"
    raise SignatureError(f"a signature must cover {what}")


def _cavage_message(claim: _Claim, method: str, target: str, fields: dict[str, str]) -> str:
    lines = []
    for name in claim.covered:
        if name == "(request-target)":
            value = f"{method.lower()} {target}"
        elif name in ("(created)", "(expires)"):
            value = str(claim.params.get(name[1:-1], ""))
            if not value:
                raise SignatureError(f"the signature covers {name} but has no {name[1:-1]} parameter")
        elif name.startswith("("):
            raise SignatureError(f"the signature covers {name}, which this server does not know")
        else:
            value = _header(fields, name)
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def _rfc9421_message(claim: _Claim, method: str, target: str, fields: dict[str, str], scheme: str) -> str:
    lines = [f'"{name}": {_component(name, method, target, fields, scheme)}\n' for name in claim.covered]
    # Serialized again rather than copied: the signature base uses the canonical form (RFC 9421 section 2.3).
    params = serialize_inner_list([(name, {}) for name in claim.covered], dict(claim.params))
    return "".join(lines) + f'"@signature-params": {params}'


def _component(name: str, method: str, target: str, fields: dict[str, str], scheme: str) -> str:
    if not name.startswith("@"):
        return _header(fields, name)
    if name == "@method":
        return method
    if name == "@target-uri":
        return f"{scheme}://{_authority(_header(fields, 'host'), scheme)}{target}"
    if name == "@authority":
        return _authority(_header(fields, "host"), scheme)
    if name == "@scheme":
        return scheme
    if name == "@path":
        return target.partition("?")[0] or "/"
    if name == "@query":
        return "?" + target.partition("?")[2]
    if name == "@request-target":
        return target
    raise SignatureError(f"the signature covers {name}, which this server does not support")


# --- signing -----------------------------------------------------------------------------------------------------


def _sign(
    method: str, scheme: str, host: str, target: str, body: bytes | None, key: SigningKey, form: SignatureForm,
    now: datetime | None,
) -> dict[str, str]:  # fmt: skip
    moment = _utc(now)
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
    values = {"@method": method, "@target-uri": f"{scheme}://{_authority(host, scheme)}{target}"}
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


# --- shared --------------------------------------------------------------------------------------------------------


def _normalize(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-case names, trimmed values, repeated fields joined with ", " (as both forms sign them)."""
    fields: dict[str, str] = {}
    for name, value in headers.items():
        name = name.lower()
        value = value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    return fields


def _header(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise SignatureError(f"the signature covers the {name} header, which the request does not have")
    return value


def _authority(host: str, scheme: str) -> str:
    host = host.lower()
    default = _DEFAULT_PORTS.get(scheme)
    return host[: -len(default)] if default and host.endswith(default) else host


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _integer_param(claim: _Claim, name: str) -> int | None:
    value = claim.params.get(name)
    if value is None:
        return None
    if claim.form == "rfc9421" and type(value) is int:
        return value
    if claim.form == "cavage" and isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)  # draft-cavage parameters are all text
    raise SignatureError(f"the signature's {name} parameter is not an integer")


@functools.lru_cache(maxsize=256)  # requests arriving in the same second share their Date
def _http_date(value: str) -> float:
    match = _IMF_FIXDATE.fullmatch(value)
    try:
        if match:  # the form every server sends, parsed without the cost of the general parser
            day, month, year, hour, minute, second = match.groups()
            numbers = int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second)
            return datetime(*numbers, tzinfo=UTC).timestamp()
        parsed = parsedate_to_datetime(value)
    except (KeyError, ValueError, TypeError):
        raise SignatureError(f"the Date header is not an HTTP date: {value!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _base64(value: str) -> bytes:
    try:
        signature = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise SignatureError("the signature is not valid base64") from None
    if not signature:
        raise SignatureError("the Signature header has no signature")
    return signature


def _signature_holds(key: PublicKey, algorithm: _Algorithm, signature: bytes, message: bytes) -> bool:
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

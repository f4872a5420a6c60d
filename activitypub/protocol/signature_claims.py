"""What an incoming request's signature headers claim, read but not yet believed, and the signature base both
forms sign: the parsing half of HTTP signatures, shared by `signatures.verify_request` (which checks a claim)
and `signatures.sign_request` (which builds the same base for its own requests).

Everything here is pure and refuses malformed input with `SignatureError`, whose reason says, in English,
what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, NamedTuple, TypeAlias, get_args

from activitypub.protocol.digests import (
    BareItem,
    StructuredFieldError,
    Token,
    parse_dictionary,
    serialize_inner_list,
)

SignatureForm: TypeAlias = Literal["cavage", "rfc9421"]

Algorithm: TypeAlias = Literal["rsa-v1_5-sha256", "rsa-pss-sha512", "ed25519"]
ALGORITHMS: dict[str, Algorithm] = {name: name for name in get_args(Algorithm)}  # RFC 9421 names we verify
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


class Claim(NamedTuple):
    """What a request's signature headers say, parsed but not yet believed."""

    form: SignatureForm
    key_id: str
    covered: tuple[str, ...]
    params: Mapping[str, BareItem]
    algorithm: Algorithm | None
    signature: bytes


def read_claim(fields: Mapping[str, str]) -> Claim:
    return claim_of(fields.get("signature-input"), fields.get("signature"))


@functools.lru_cache(maxsize=64)  # an inbox reads each request's claim twice: to find the key, then to verify
def claim_of(signature_input: str | None, signature: str | None) -> Claim:
    if signature_input is not None:
        return rfc9421_claim(signature_input, signature)
    if signature is not None:
        return cavage_claim(signature)
    raise SignatureError("the request is not signed: it has no Signature header")


def cavage_claim(value: str) -> Claim:
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
    signature = signature_bytes(params.get("signature", ""))
    return Claim(
        "cavage", params["keyid"], covered, params, "rsa-v1_5-sha256" if algorithm != "hs2019" else None, signature
    )


def rfc9421_claim(signature_input: str, signature_field: str | None) -> Claim:
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
    algorithm = ALGORITHMS.get(alg) if isinstance(alg, str) else None
    if alg is not None and algorithm is None:
        raise SignatureError(f"the signature algorithm {alg!r} is not supported")
    covered: list[str] = []
    for name, component_params in components:
        if not isinstance(name, str) or isinstance(name, Token) or component_params:
            raise SignatureError(f"the signature covers {name!r} in a form this server does not support")
        covered.append(name)
    if len(set(covered)) != len(covered):
        raise SignatureError("the signature covers a component twice")
    return Claim("rfc9421", key_id, tuple(covered), params, algorithm, signature)


def claimed_time(claim: Claim, covers: set[str], fields: dict[str, str]) -> float:
    created = integer_param(claim, "created")
    if claim.form == "cavage" and "(created)" in covers:
        if created is None:
            raise SignatureError("the signature covers (created) but has no created parameter")
        return float(created)
    if claim.form == "rfc9421" and created is not None:
        return float(created)
    if "date" in covers:
        return http_date(header_value(fields, "date"))
    what = "date or (created)" if claim.form == "cavage" else "date, or have a created parameter"
    raise SignatureError(f"a signature must cover {what}")


def cavage_message(claim: Claim, method: str, target: str, fields: dict[str, str]) -> str:
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
            value = header_value(fields, name)
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def rfc9421_message(claim: Claim, method: str, target: str, fields: dict[str, str], scheme: str) -> str:
    lines = [f'"{name}": {component(name, method, target, fields, scheme)}\n' for name in claim.covered]
    # Serialized again rather than copied: the signature base uses the canonical form (RFC 9421 section 2.3).
    params = serialize_inner_list([(name, {}) for name in claim.covered], dict(claim.params))
    return "".join(lines) + f'"@signature-params": {params}'


def component(name: str, method: str, target: str, fields: dict[str, str], scheme: str) -> str:
    if not name.startswith("@"):
        return header_value(fields, name)
    if name == "@method":
        return method
    if name == "@target-uri":
        return f"{scheme}://{authority(header_value(fields, 'host'), scheme)}{target}"
    if name == "@authority":
        return authority(header_value(fields, "host"), scheme)
    if name == "@scheme":
        return scheme
    if name == "@path":
        return target.partition("?")[0] or "/"
    if name == "@query":
        return "?" + target.partition("?")[2]
    if name == "@request-target":
        return target
    raise SignatureError(f"the signature covers {name}, which this server does not support")


# --- shared with signing ---------------------------------------------------------------------------------------


class Fields(dict[str, str]):
    """A request's header fields as `normalize_fields` gives them: read once, for the key id and then the check."""


def normalize_fields(headers: Mapping[str, str]) -> Fields:
    """Lower-case names, trimmed values, repeated fields joined with ", " (as both forms sign them)."""
    if isinstance(headers, Fields):
        return headers
    fields = Fields()
    for name, value in headers.items():
        name = name.lower()
        value = value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    return fields


def header_value(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise SignatureError(f"the signature covers the {name} header, which the request does not have")
    return value


def authority(host: str, scheme: str) -> str:
    host = host.lower()
    default = _DEFAULT_PORTS.get(scheme)
    return host[: -len(default)] if default and host.endswith(default) else host


def as_utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def integer_param(claim: Claim, name: str) -> int | None:
    value = claim.params.get(name)
    if value is None:
        return None
    if claim.form == "rfc9421" and type(value) is int:
        return value
    if claim.form == "cavage" and isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)  # draft-cavage parameters are all text
    raise SignatureError(f"the signature's {name} parameter is not an integer")


@functools.lru_cache(maxsize=256)  # requests arriving in the same second share their Date
def http_date(value: str) -> float:
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


def signature_bytes(value: str) -> bytes:
    try:
        signature = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise SignatureError("the signature is not valid base64") from None
    if not signature:
        raise SignatureError("the Signature header has no signature")
    return signature

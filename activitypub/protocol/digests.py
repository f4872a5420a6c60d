"""Body digests of signed requests, and the structured-field dictionaries (RFC 8941) they are written in.

Two headers carry a digest: `Digest` (RFC 3230, `SHA-256=<base64>`), which draft-cavage signatures cover, and
`Content-Digest` (RFC 9530, `sha-256=:<base64>:`), which RFC 9421 signatures cover. Both are checked the same
way: every SHA-256 or SHA-512 value listed must match the body, and at least one must be listed.
`Content-Digest`, `Signature-Input` and `Signature` are RFC 8941 dictionaries; the parser and the few
serializers RFC 9421 needs live here, beside the first of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import TypeAlias

__all__ = [
    "BareItem",
    "DigestError",
    "Item",
    "Member",
    "Parameters",
    "StructuredFieldError",
    "Token",
    "check_content_digest",
    "check_digest",
    "content_digest_header",
    "digest_header",
    "parse_dictionary",
    "serialize_bytes",
    "serialize_inner_list",
]


class Token(str):
    """An RFC 8941 token (written bare), as opposed to a string (written in quotes)."""


BareItem: TypeAlias = int | float | str | bytes | bool
Parameters: TypeAlias = dict[str, BareItem]
Item: TypeAlias = tuple[BareItem, Parameters]
Member: TypeAlias = tuple[BareItem | list[Item], Parameters]  # an item, or an inner list with its parameters

_HASHES: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda body: hashlib.sha256(body).digest(),
    "sha-512": lambda body: hashlib.sha512(body).digest(),
}
_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,3})?")
_STRING = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')
_ESCAPE = re.compile(r'\\(["\\])')
_BYTES = re.compile(r":([A-Za-z0-9+/]*=*):")
_BOOLEAN = re.compile(r"\?([01])")
# Fast paths for the shapes peers send (one member: a byte sequence, or an inner list of plain strings with integer
# or plain-string parameters); anything else goes through the general parser, which gives the same answer slower.
_FAST_BYTES = re.compile(r"([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/]*=*):")
_FAST_LIST = re.compile(
    r'([a-z*][a-z0-9_.*-]*)=\(((?:"[ !#-\[\]-~]*")?(?: "[ !#-\[\]-~]*")*)\)'
    r'((?:;[a-z*][a-z0-9_.*-]*=(?:-?[0-9]{1,15}|"[ !#-\[\]-~]*"))*)'
)
_FAST_STRINGS = re.compile(r'"([ !#-\[\]-~]*)"')
_FAST_PARAMS = re.compile(r';([a-z*][a-z0-9_.*-]*)=(?:(-?[0-9]{1,15})|"([ !#-\[\]-~]*)")')
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*")


class DigestError(ValueError):
    """A digest header that is malformed or does not vouch for the body; the message says which, in English."""


class StructuredFieldError(ValueError):
    """A header that is not the RFC 8941 dictionary it should be; the message says where."""


def digest_header(body: bytes) -> str:
    """The `Digest` header value for `body`: `SHA-256=<base64>`."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def content_digest_header(body: bytes) -> str:
    """The `Content-Digest` header value for `body`: `sha-256=:<base64>:`."""
    return "sha-256=" + serialize_bytes(hashlib.sha256(body).digest())


def check_digest(value: str, body: bytes) -> None:
    """Raise DigestError unless the `Digest` header `value` vouches for `body`."""
    digests: list[tuple[str, bytes]] = []
    for member in value.split(","):
        name, equals, encoded = member.partition("=")
        name = name.strip().lower()
        if not equals or not name:
            raise DigestError(f"the Digest header is malformed: {member.strip()!r}")
        if name in _HASHES:
            try:
                digests.append((name, base64.b64decode(encoded.strip(), validate=True)))
            except binascii.Error:
                raise DigestError(f"the Digest header's {name} value is not valid base64") from None
    _check(digests, body, "Digest")


def check_content_digest(value: str, body: bytes) -> None:
    """Raise DigestError unless the `Content-Digest` header `value` vouches for `body`."""
    try:
        members = parse_dictionary(value, "Content-Digest")
    except StructuredFieldError as error:
        raise DigestError(str(error)) from None
    digests: list[tuple[str, bytes]] = []
    for name, (digest, _) in members.items():
        if name in _HASHES:
            if not isinstance(digest, bytes):
                raise DigestError(f"the Content-Digest header's {name} value is not a byte sequence (:base64:)")
            digests.append((name, digest))
    _check(digests, body, "Content-Digest")


def parse_dictionary(text: str, header: str) -> dict[str, Member]:
    """The RFC 8941 dictionary in `text`, members in order; StructuredFieldError names `header` if malformed."""
    text = text.strip(" ")
    fast = _FAST_BYTES.fullmatch(text)
    if fast is not None:
        try:
            return {fast[1]: (base64.b64decode(fast[2], validate=True), {})}
        except binascii.Error:
            pass  # the general parser says where
    fast = _FAST_LIST.fullmatch(text)
    if fast is not None:
        items: list[Item] = [(name, {}) for name in _FAST_STRINGS.findall(fast[2])]
        params: Parameters = {
            key: int(number) if number else string for key, number, string in _FAST_PARAMS.findall(fast[3])
        }
        return {fast[1]: (items, params)}
    reader = _Reader(text, header)
    members: dict[str, Member] = {}
    while reader.position < len(reader.text):
        key = reader.match(_KEY, "a key")
        if reader.peek() == "=":
            reader.position += 1
            members[key] = reader.inner_list() if reader.peek() == "(" else reader.item()
        else:
            members[key] = (True, reader.parameters())
        reader.skip(" \t")
        if reader.position == len(reader.text):
            break
        if reader.peek() != ",":
            raise reader.fail('","')
        reader.position += 1
        reader.skip(" \t")
        if reader.position == len(reader.text):
            raise reader.fail("a member after the last comma")
    return members


def serialize_inner_list(items: list[Item], params: Parameters) -> str:
    """An inner list with its parameters, as RFC 8941 writes it (and RFC 9421 signs it)."""
    inner = " ".join([_serialize(value) + _serialize_params(p) if p else _serialize(value) for value, p in items])
    return f"({inner}){_serialize_params(params)}"


def serialize_bytes(value: bytes) -> str:
    return ":" + base64.b64encode(value).decode("ascii") + ":"


def _check(digests: list[tuple[str, bytes]], body: bytes, header: str) -> None:
    # An algorithm we do not know (or no longer trust, like SHA-1) neither helps nor harms.
    if not digests:
        raise DigestError(f"the {header} header has no SHA-256 or SHA-512 digest")
    for name, claimed in digests:
        if not hmac.compare_digest(claimed, _HASHES[name](body)):
            raise DigestError(f"the {header} header's {name} digest does not match the body")


def _serialize_params(params: Parameters) -> str:
    return "".join([f";{key}" if value is True else f";{key}={_serialize(value)}" for key, value in params.items()])


def _serialize(value: BareItem) -> str:
    if type(value) is str:  # the common case first
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, str):
        return str(value)  # a Token
    return serialize_bytes(value)


class _Reader:
    """A cursor over one header value, for the RFC 8941 parsing algorithms."""

    def __init__(self, text: str, header: str) -> None:
        self.text = text
        self.header = header
        self.position = 0

    def fail(self, expected: str) -> StructuredFieldError:
        return StructuredFieldError(f"the {self.header} header is malformed: expected {expected} at {self.position}")

    def peek(self) -> str:
        return self.text[self.position : self.position + 1]

    def skip(self, characters: str) -> None:
        while self.position < len(self.text) and self.text[self.position] in characters:
            self.position += 1

    def match(self, pattern: re.Pattern[str], expected: str) -> str:
        found = pattern.match(self.text, self.position)
        if found is None:
            raise self.fail(expected)
        self.position = found.end()
        return found.group()

    def inner_list(self) -> Member:
        self.position += 1
        items: list[Item] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.position += 1
                return items, self.parameters()
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise self.fail('" " or ")"')

    def item(self) -> Item:
        return self.bare_item(), self.parameters()

    def parameters(self) -> Parameters:
        params: Parameters = {}
        while self.peek() == ";":
            self.position += 1
            self.skip(" ")
            key = self.match(_KEY, "a parameter name")
            params[key] = True
            if self.peek() == "=":
                self.position += 1
                params[key] = self.bare_item()
        return params

    def bare_item(self) -> BareItem:
        first = self.peek()
        if first == '"':
            return _ESCAPE.sub(r"\1", self.match(_STRING, "a string")[1:-1])
        if first == ":":
            try:
                return base64.b64decode(self.match(_BYTES, "a byte sequence")[1:-1], validate=True)
            except binascii.Error:
                raise self.fail("base64") from None
        if first == "?":
            return self.match(_BOOLEAN, "a boolean") == "?1"
        if first and first in "-0123456789":
            number = self.match(_NUMBER, "a number")
            return float(number) if "." in number else int(number)
        if first and first in _LETTERS:
            return Token(self.match(_TOKEN, "a token"))
        raise self.fail("an item")

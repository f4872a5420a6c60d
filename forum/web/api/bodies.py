"""Reading what an API client sends: JSON bodies, fields, path ids and query parameters, strictly.

Every refusal is a domain error with a reason a person can act on (and the field it names), so a
malformed request is answered 400/415/422, never 500.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from starlette.requests import Request

from forum.errors import ForumError, InvalidInput, NotFound

# Ids are 32-bit integers in the database; anything larger could not name a record.
MAX_ID = 2**31 - 1


class BadBody(ForumError):
    """The body cannot be read as a JSON object at all."""

    status = 400


class UnsupportedMediaType(ForumError):
    status = 415


async def json_object(request: Request, fields: Collection[str]) -> dict[str, Any]:
    """The request body as a JSON object holding only `fields` (each still to be checked)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Send the body as JSON, with Content-Type: application/json.")
    raw = await request.body()
    if not raw.strip():
        raise BadBody("The request has no body; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadBody(f"The body is not valid UTF-8 (byte {error.start}).") from error
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as error:
        raise BadBody("The JSON is nested too deeply.") from error
    except ValueError as error:
        raise BadBody(f"The body is not valid JSON: {error}.") from error
    if not isinstance(data, dict):
        raise BadBody(f"The body must be a JSON object with the fields {_names(fields)}.")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidInput(
            f"This call does not take the field “{unknown[0]}”; it takes {_names(fields)}.", field=unknown[0]
        )
    return data


def text_field(data: dict[str, Any], name: str) -> str:
    value = optional_text_field(data, name)
    if value is None:
        raise InvalidInput(f"The field “{name}” is missing.", field=name)
    return value


def optional_text_field(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"“{name}” must be a string, not {_json_type(value)}.", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        # json.loads accepts "\ud800"; no database can store it.
        raise InvalidInput(f"“{name}” holds an unpaired surrogate (\\u escape).", field=name) from error
    return value


def optional_id_field(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"“{name}” must be a post id (an integer), not {_json_type(value)}.", field=name)
    if not 1 <= value <= MAX_ID:
        raise InvalidInput(f"“{name}” is not an id this forum uses.", field=name)
    return value


def choice_field(data: dict[str, Any], name: str, choices: Collection[int]) -> int:
    """A required integer among `choices` (a vote's 1, 0 or -1)."""
    value = data.get(name)
    allowed = ", ".join(str(choice) for choice in choices)
    if value is None:
        raise InvalidInput(f"The field “{name}” is missing; it is one of {allowed}.", field=name)
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise InvalidInput(f"“{name}” must be one of {allowed}, not {json.dumps(value)[:40]}.", field=name)
    return value


def reference_field(data: dict[str, Any], name: str) -> str:
    """An id or a name (`"general"`, `3`), as text: the services accept both forms."""
    value = data.get(name)
    if value is None:
        raise InvalidInput(f"The field “{name}” is missing.", field=name)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= MAX_ID:
            raise InvalidInput(f"“{name}” is not an id this forum uses.", field=name)
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"“{name}” must be an id or a name, not {_json_type(value)}.", field=name)
    return optional_text_field(data, name) or ""


def checked_reference(raw: str, what: str) -> str:
    """An id or a name the services can look up safely; others name nothing (404).

    The services read any `str.isdigit()` text as an id, which `int()` refuses for digits such as
    "²" and the database refuses past 32 bits.
    """
    raw = raw.strip()
    if raw.isdigit() and (not raw.isascii() or len(raw) > 10 or not 1 <= int(raw) <= MAX_ID):
        raise NotFound(f"No such {what}.")
    return raw


def path_id(request: Request, name: str, what: str) -> int:
    """An id from the path; anything that cannot be an id names nothing, hence 404."""
    raw = request.path_params[name]
    if not _is_number(raw) or not 1 <= int(raw) <= MAX_ID:
        raise NotFound(f"No such {what}.")
    return int(raw)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _is_number(raw) or not low <= int(raw) <= high:
        raise InvalidInput(f"“{name}” must be a whole number from {low} to {high}.", field=name)
    return int(raw)


def _is_number(raw: str) -> bool:
    return raw.isascii() and raw.isdigit() and len(raw) <= 10


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _json_type(value: object) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
             dict: "an object"}  # fmt: skip
    return kinds.get(type(value), "null")


def _names(fields: Collection[str]) -> str:
    return ", ".join(f"“{name}”" for name in fields)

"""What Jardin would make of an incoming ActivityStreams document, worked out offline from its normalized form:
the forum thing it becomes (a thread, a reply, a vote, a follow, a report…) or the reason it is refused.
`forum federation inspect` prints it; nothing here fetches, stores or knows the database.

Decisions: origins follow FEP-fe34 (an activity's id and its actor share a host; so do a created or edited
object and its author; an Announce may carry anyone's object; a Delete of an object on another host is a
moderator's removal). Jardin has no private messages: a post addressed to neither the public, nor followers,
nor an audience is refused, as are chat messages. Video, Event, Audio and Question (polls) are not forum posts
and are refused rather than turned into threads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from activitypub.protocol.jsonld import DocumentError, Normalizer, parse_json
from activitypub.protocol.ld_signatures import ld_signature_creator
from activitypub.protocol.vocabulary import (
    ACTIVITY_TYPES,
    ACTOR_TYPES,
    COLLECTION_TYPES,
    OBJECT_TYPES,
    PUBLIC,
    TYPE_IRIS,
)

POST_TYPES = frozenset({"Note", "Page", "Article"})
NOT_FORUM_POSTS = frozenset({"Video", "Event", "Audio", "Question"})
_SIMPLE = {"Like": "vote-up", "Dislike": "vote-down", "Follow": "follow", "Accept": "accept", "Reject": "reject"}
_SIMPLE |= {"Flag": "report", "Block": "block", "Lock": "moderation"}
_TAG = re.compile(r"<[^>]*>")
_METHODS = {
    "terms": "read by its terms (every context it uses is bundled)",
    "jsonld": "read by JSON-LD processing (its contexts redefine terms or it names properties by IRI)",
    "plain-terms": "read by its plain terms (a context it uses is not bundled and was not fetched)",
    "no-context": "read by its plain terms (it has no @context)",
}


class Refused(ValueError):
    """Jardin would not accept the document; `reason` says why in plain English."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Understanding:
    """What a document becomes in the forum, with the lines a person needs to check it."""

    becomes: str
    activity: str | None = None
    object_type: str | None = None
    summary: list[str] = field(default_factory=list)


def understand(document: Mapping[str, Any]) -> Understanding:
    """What the normalized `document` becomes, or `Refused`."""
    kind = _type(document)
    doc_id = _http_id(document.get("id"), "the document")
    if kind in ACTIVITY_TYPES and kind != "Question":
        return _activity(document, kind, doc_id)
    becomes, lines = _object(document, kind, doc_id)
    return Understanding(becomes, None, kind, lines)


def render(understanding: Understanding) -> str:
    """The understanding as the lines `forum federation inspect` prints."""
    lines = [f"becomes: {_headline(understanding)}"]
    lines.extend(f"  {line}" for line in understanding.summary)
    return "\n".join(lines)


def inspect_bytes(raw: bytes, normalizer: Normalizer) -> tuple[int, str]:
    """Exit code and text for `forum federation inspect`: the normalized form and what it would become (0), or
    the reason it would be refused (1). Never fetches anything."""
    try:
        document = parse_json(raw, max_depth=normalizer.max_depth)
        normalized = normalizer.normalize(document)
    except DocumentError as error:
        return 1, f"refused: {error}"
    text = json.dumps(normalized.document, indent=2, ensure_ascii=False)
    head = f"normalized, {_METHODS[normalized.method]}:\n{text}\n"
    creator = ld_signature_creator(document)
    if creator is not None:
        head += f"carries an RsaSignature2017 by {creator} (not checked here: that needs the author's key)\n"
    try:
        understanding = understand(normalized.document)
    except Refused as refused:
        return 1, f"{head}\nrefused: {refused.reason}"
    return 0, f"{head}\n{render(understanding)}"


def _headline(understanding: Understanding) -> str:
    what = " of ".join(part for part in (understanding.activity, understanding.object_type) if part)
    return understanding.becomes + (f" ({what})" if what else "")


def _activity(activity: Mapping[str, Any], kind: str, activity_id: str) -> Understanding:
    actor = _single(activity.get("actor"), "actor")
    if actor is None:
        raise Refused(f"the {kind} has no actor")
    if _host(actor) != _host(activity_id):
        raise Refused(f"the {kind} {activity_id} and its actor {actor} are on different hosts")
    value = activity.get("object")
    embedded = value if isinstance(value, dict) else None
    object_type = _type(embedded) if embedded is not None else None
    lines = [f"actor: {actor}"]
    if kind in ("Create", "Update"):
        if embedded is None:
            raise Refused(f"a {kind} must embed its object")
        becomes, more = _changed(embedded, kind, object_type, actor)
        return Understanding(becomes, kind, object_type, lines + more)
    if kind == "Announce" and embedded is not None and object_type in ACTIVITY_TYPES:
        try:
            inner = understand(embedded)
        except Refused as refused:
            raise Refused(f"the announced activity would be refused: {refused.reason}") from None
        lines += [f"announces: {_headline(inner)}", *(f"  {line}" for line in inner.summary)]
        return Understanding("announce", kind, object_type, lines)
    objects = value if isinstance(value, list) and kind == "Flag" else [value]
    ids = [_single(item, "object") for item in objects]
    if not ids or None in ids:
        raise Refused(f"the {kind} has no object")
    lines += [f"object: {object_id}" for object_id in ids] + _details(activity)
    if kind == "Undo":
        return Understanding("undo", kind, object_type, lines + _undone(embedded, actor))
    if kind in ("Accept", "Reject") and embedded is not None and object_type == "Follow":
        if _single(embedded.get("object"), "object") not in (None, actor):
            raise Refused(f"an actor can only {kind.lower()} follows of itself")
        lines.append(f"follower: {_single(embedded.get('actor'), 'actor')}")
    if kind == "Announce":
        return Understanding("announce", kind, object_type, lines)
    if kind == "Delete":
        return Understanding(_deletion(str(ids[0]), actor, lines), kind, object_type, lines)
    if kind in ("Add", "Remove"):
        if activity.get("target") is None:
            raise Refused(f"an {kind} needs a target (the featured or moderators collection)")
        return Understanding("moderation", kind, object_type, lines)
    if kind in _SIMPLE:
        return Understanding(_SIMPLE[kind], kind, object_type, lines)
    raise Refused(f"{kind} activities are not supported")


def _changed(obj: Mapping[str, Any], kind: str, object_type: str | None, actor: str) -> tuple[str, list[str]]:
    """A Create or Update: what its object becomes."""
    object_id = _http_id(obj.get("id"), f"the object of the {kind}")
    lines = [f"object: {object_id}"]
    if kind == "Update" and object_type in ACTOR_TYPES:
        if object_id == actor:
            return "actor", lines + _object(obj, object_type, object_id)[1]
        if object_type == "Group":
            return "moderation", [*lines, "a moderator updates the group's profile"]
        raise Refused("an actor can only update its own profile")
    if _host(object_id) != _host(actor):
        raise Refused(f"the object {object_id} is not on the host of its author {actor}")
    becomes, more = _object(obj, object_type, object_id)
    if becomes not in ("thread", "reply"):
        raise Refused(f"a {kind} of a {object_type} is not supported")
    author = _single(obj.get("attributedTo"), "attributedTo")
    if author != actor:
        raise Refused(f"the {object_type} is attributed to {author}, not to the actor {actor}")
    return ("edit" if kind == "Update" else becomes), lines + more


def _object(obj: Mapping[str, Any], kind: str | None, object_id: str) -> tuple[str, list[str]]:
    if kind in ACTOR_TYPES:
        return "actor", _actor(obj, object_id)
    if kind in COLLECTION_TYPES:
        return "collection", [f"{name}: {obj[name]}" for name in ("totalItems", "first") if name in obj]
    if kind == "Tombstone":
        return "tombstone", []
    if kind == "ChatMessage":
        raise Refused("chat messages are private messages, which Jardin does not support")
    if kind in NOT_FORUM_POSTS:
        raise Refused(f"not a forum post: {kind} is not supported")
    if kind in POST_TYPES:
        return _post(obj, object_id)
    if kind in OBJECT_TYPES or kind in TYPE_IRIS:
        return "object", []
    raise Refused(f"the type {kind} is not one Jardin knows")


def _post(post: Mapping[str, Any], post_id: str) -> tuple[str, list[str]]:
    author = _single(post.get("attributedTo"), "attributedTo")
    if author is None:
        raise Refused("a post needs an author (attributedTo)")
    if _host(author) != _host(post_id):
        raise Refused(f"the post {post_id} is not on the host of its author {author}")
    recipients = [r for name in ("to", "cc", "bto", "bcc") for r in post.get(name, []) if isinstance(r, str)]
    followers = any(r.rstrip("/").endswith(("/followers", "/subscribers")) for r in recipients)
    if PUBLIC not in recipients and not followers and not post.get("audience"):
        raise Refused("private messages are not supported (the post is addressed only to specific actors)")
    lines = [f"author: {author}"]
    if isinstance(post.get("name"), str):
        lines.append(f"title: {post['name']}")
    reply_to = _single(post.get("inReplyTo"), "inReplyTo")
    if reply_to is not None:
        lines.append(f"in reply to: {reply_to}")
    lines += [f"audience: {a}" for a in post.get("audience", []) if isinstance(a, str)]
    lines.append("addressed to: " + ("the public" if PUBLIC in recipients else "followers"))
    text = post.get("content") or next(iter((post.get("contentMap") or {}).values()), None)
    if isinstance(text, str) and text.strip():
        plain = " ".join(_TAG.sub(" ", text).split())
        lines.append(f"text: {plain[:120]}{'…' if len(plain) > 120 else ''}")
    return ("reply" if reply_to is not None else "thread"), lines


def _actor(actor: Mapping[str, Any], actor_id: str) -> list[str]:
    key = actor.get("publicKey")
    if isinstance(key, dict) and key.get("owner") not in (None, actor_id):
        raise Refused(f"the actor's key belongs to {key.get('owner')}, not to {actor_id}")
    lines = [f"{name}: {actor[name]}" for name in ("preferredUsername", "name", "inbox") if name in actor]
    if isinstance(key, dict) and isinstance(key.get("id"), str):
        lines.append(f"key: {key['id']}")
    return lines


def _undone(inner: Mapping[str, Any] | None, actor: str) -> list[str]:
    if inner is None:
        return []
    if _single(inner.get("actor"), "actor") not in (None, actor):
        raise Refused("an actor can only undo its own activities")
    return [f"undoes: {_type(inner)}"]


def _deletion(object_id: str, actor: str, lines: list[str]) -> str:
    if object_id == actor:
        lines.append("the actor deletes its own account")
        return "delete"
    if _host(object_id) != _host(actor):
        lines.append("a moderator's removal: the object is not on the actor's host")
        return "moderation"
    return "delete"


def _details(activity: Mapping[str, Any]) -> list[str]:
    lines = []
    target = _single(activity.get("target"), "target")
    if target is not None:
        lines.append(f"target: {target}")
    lines += [f"audience: {a}" for a in activity.get("audience", []) if isinstance(a, str)]
    reason = activity.get("summary") or activity.get("content")
    if isinstance(reason, str) and reason.strip():
        lines.append(f"reason: {reason.strip()}")
    return lines


def _type(document: Mapping[str, Any]) -> str:
    value = document.get("type")
    names = [name for name in (value if isinstance(value, list) else [value]) if isinstance(name, str)]
    known = [name for name in names if name in ACTIVITY_TYPES or name in TYPE_IRIS]
    if not names:
        raise Refused("the document has no type")
    return (known or names)[0]


def _single(value: Any, name: str) -> str | None:
    """The id of a single reference or embedded object; several are refused."""
    if isinstance(value, list):
        if len(value) > 1:
            raise Refused(f"more than one {name} is not supported")
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _http_id(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Refused(f"{what} has no id")
    if _host(value) is None:
        raise Refused(f"{what} has the id {value!r}, which is not an http(s) URL")
    return value


def _host(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname + (f":{parts.port}" if parts.port else "")

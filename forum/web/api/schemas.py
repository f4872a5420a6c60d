"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of what API v1 takes and answers, as plain data.

They mirror forum.web.api.serializers and forum.web.api.bodies; the tests compare real answers
against them, so a field added on one side and not the other shows up.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def string(description: str = "", fmt: str | None = None, nullable: bool = False) -> Json:
    schema: Json = {"type": ["string", "null"] if nullable else "string"}
    if fmt:
        schema["format"] = fmt
    if description:
        schema["description"] = description
    return schema


def integer(description: str = "", nullable: bool = False) -> Json:
    schema: Json = {"type": ["integer", "null"] if nullable else "integer"}
    if description:
        schema["description"] = description
    return schema


def boolean(description: str = "") -> Json:
    return {"type": "boolean", **({"description": description} if description else {})}


def array(items: Json) -> Json:
    return {"type": "array", "items": items}


def obj(properties: dict[str, Json], optional: tuple[str, ...] = (), description: str = "") -> Json:
    """An object whose properties are all present, except `optional` ones."""
    schema: Json = {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }
    if description:
        schema["description"] = description
    return schema


def _time(description: str = "", nullable: bool = False) -> Json:
    return string(description or "RFC 3339, UTC", "date-time", nullable)


AUTHOR = obj(
    {
        "id": integer("local id of the actor (member ids in the API are actor ids)"),
        "name": string("display name, or the username"),
        "handle": string("`name` for a local member, `name@host` for a remote one"),
        "local": boolean(),
        "url": string("profile page", "uri", nullable=True),
    }
)
CATEGORY_REF = obj({"id": integer(), "slug": string(), "name": string(), "url": string(fmt="uri")})
CATEGORY = obj(
    {
        "id": integer(),
        "slug": string(),
        "name": string(),
        "description": string(),
        "ap_id": string("ActivityPub id of its Group actor", "uri"),
        "url": string("its page", "uri"),
        "handle": string("`slug@host`, to follow it from the fediverse"),
        "local": boolean(),
        "private": boolean(),
        "thread_count": integer(),
        "post_count": integer(),
        "last_activity_at": _time(nullable=True),
    }
)
THREAD_FIELDS: dict[str, Json] = {
    "id": integer(),
    "title": string(),
    "ap_id": string("ActivityPub id", "uri", nullable=True),
    "url": string("its page", "uri"),
    "author": ref("Author"),
    "post_count": integer(),
    "created_at": _time(),
    "last_activity_at": _time(),
    "pinned": boolean(),
    "locked": boolean("locked and archived threads take no replies"),
    "archived": boolean(),
}
THREAD = obj({**THREAD_FIELDS, "local": boolean(), "category": ref("CategoryRef"), "tags": array(string())})
POST = obj(
    {
        "id": integer(),
        "ap_id": string("ActivityPub id", "uri", nullable=True),
        "url": string("its permalink", "uri"),
        "thread": integer("id of its thread"),
        "position": integer("1 for the opening post"),
        "author": ref("Author"),
        "body": string("Markdown source; empty when deleted or removed"),
        "html": string("sanitized HTML; empty when deleted or removed"),
        "in_reply_to": integer("id of the post it answers", nullable=True),
        "created_at": _time(),
        "edited_at": _time(nullable=True),
        "deleted": boolean("deleted by its author"),
        "removed": boolean("removed by a moderator"),
        "revision_count": integer(),
        "upvotes": integer("up votes, from here and elsewhere"),
        "downvotes": integer("down votes, from here and elsewhere"),
        "score": integer("upvotes minus downvotes"),
    }
)
REVISION = obj(
    {
        "number": integer(),
        "title": string("the thread's title then, for an opening post", nullable=True),
        "body": string(),
        "html": string(),
        "created_at": _time(),
    }
)
MEMBER = obj({**AUTHOR["properties"], "ap_id": string(fmt="uri"), "summary": string()})
TOKEN = obj(
    {
        "id": integer(),
        "name": string(),
        "prefix": string("the token's first characters, to recognize it"),
        "created_at": _time(),
        "last_used_at": _time("updated at most once a minute", nullable=True),
    }
)
ME = obj(
    {
        **MEMBER["properties"],
        "email": string(fmt="email"),
        "role": string(),
        "admin": boolean(),
        "duties": array(obj({"duty": string(), "category": integer("null: instance-wide", nullable=True)})),
        "language": string(nullable=True),
        "theme": string(nullable=True),
        "created_at": _time(),
        "token": TOKEN,
    }
)


def _typed(kind: str, name: str) -> Json:
    return {"allOf": [obj({"type": {"const": kind}}), ref(name)]}


SCHEMAS: dict[str, Json] = {
    "Problem": obj(
        {
            "type": string(fmt="uri-reference"),
            "title": string(),
            "status": integer(),
            "detail": string("what went wrong, for a person to read"),
            "field": string("the request field at fault"),
            "request_id": string("quote it to the operator", nullable=True),
        },
        optional=("field", "request_id"),
        description="RFC 9457 problem details, served as application/problem+json",
    ),
    "Author": AUTHOR,
    "Member": MEMBER,
    "Me": ME,
    "CategoryRef": CATEGORY_REF,
    "Category": CATEGORY,
    "ThreadSummary": obj(THREAD_FIELDS),
    "ThreadListing": obj(
        {
            "category": ref("CategoryRef"),
            "threads": array(ref("ThreadSummary")),
            "next": string("pass as `after` for the next page; null on the last", nullable=True),
        }
    ),
    "Thread": THREAD,
    "ThreadPage": {
        "allOf": [
            ref("Thread"),
            obj({"posts": array(ref("Post")), "page": integer(), "page_count": integer()}),
        ]
    },
    "Post": POST,
    "Revision": REVISION,
    "Revisions": obj({"post": ref("Post"), "revisions": array(ref("Revision"))}),
    "Resolved": {
        "oneOf": [
            _typed("member", "Member"),
            _typed("category", "Category"),
            _typed("thread", "Thread"),
            _typed("post", "Post"),
        ],
    },
    "NewThread": obj(
        {
            "category": {
                "type": ["integer", "string"],
                "description": "the category's id, slug, `slug@host` for this forum, or a remote category's handle",
            },
            "title": string("at most 200 characters"),
            "body": string("Markdown, at most 50,000 characters"),
        }
    ),
    "NewPost": obj(
        {"body": string("Markdown, at most 50,000 characters"), "in_reply_to": integer(nullable=True)},
        optional=("in_reply_to",),
    ),
    "FollowTarget": obj({"target": string("`name`, `name@host`, or an actor's address")}),
    "Follow": obj(
        {
            "id": integer(),
            "state": {"type": "string", "enum": ["pending", "accepted"]},
            "target": {"oneOf": [_typed("member", "Member"), _typed("category", "Category")]},
        }
    ),
    "Vote": obj({"value": {"type": "integer", "enum": [1, 0, -1], "description": "up, none, or down"}}),
    "Tally": obj(
        {
            "post": integer("the post's id"),
            "upvotes": integer(),
            "downvotes": integer(),
            "score": integer("upvotes minus downvotes"),
            "my_vote": {"type": "integer", "enum": [1, 0, -1], "description": "your vote now"},
        }
    ),
    "PostEdit": obj(
        {"body": string("the new Markdown source"), "title": string("new thread title (opening post only)")},
        optional=("title",),
    ),
}

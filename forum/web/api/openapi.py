"""The OpenAPI 3.1 document of API v1 (`GET /api/v1/openapi.json`), written as data.

Paths are relative to the server URL `<base_url>/api/v1`. A test checks that this document and the
app's routes under /api/v1 name the same calls. Packages that `forum.web` may not import (the roles)
document their own calls as a `Section`, which the composition root registers with `add_section`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from forum import __version__
from forum.web.api.schemas import SCHEMAS, Json, integer, ref, string
from forum.web.context import ForumContext

BEARER = "bearerAuth"
PROBLEMS = {
    400: ("BadRequest", "The body or a parameter cannot be read (not JSON, not UTF-8, not an object)."),
    401: ("Unauthorized", "No token where one is needed, or an unknown or revoked token."),
    403: ("Forbidden", "The caller may not do this (another member's post, a locked thread)."),
    404: ("NotFound", "Nothing the caller may see is there (private categories look missing)."),
    413: ("ContentTooLarge", "The body is larger than the forum accepts."),
    415: ("UnsupportedMediaType", "The body is not sent as application/json."),
    422: ("UnprocessableContent", "A field is missing, of the wrong type, or refused; `field` names it."),
    429: ("TooManyRequests", "A rate limit (per token, per address, or posting) was reached."),
}
READ = (400, 401, 404, 429)
WRITE = (400, 401, 403, 404, 413, 415, 422, 429)
SECTIONS_KEY = "api_sections"


@dataclass(frozen=True)
class Section:
    """Calls documented by the package that serves them, under their own tag."""

    tag: str
    paths: dict[str, Json]
    schemas: dict[str, Json] = field(default_factory=dict)


def add_section(forum: ForumContext, section: Section) -> None:
    """Called by the app that mounts the section's routes (once per tag, however often it is built)."""
    forum.extra.setdefault(SECTIONS_KEY, {})[section.tag] = section


def sections_of(forum: ForumContext) -> list[Section]:
    return list(forum.extra.get(SECTIONS_KEY, {}).values())


def document(base_url: str, sections: Iterable[Section] = ()) -> Json:
    sections = list(sections)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Jardin API",
            "version": f"1 ({__version__})",
            "description": (
                "The forum's JSON API. Anonymous calls read public things; send "
                "`Authorization: Bearer TOKEN` (a personal access token) to act as a member. "
                "Every error is application/problem+json."
            ),
        },
        "servers": [{"url": f"{base_url}/api/v1"}],
        "security": [{}, {BEARER: []}],
        "tags": [
            {"name": name} for name in ("categories", "threads", "posts", "members", "meta", *(s.tag for s in sections))
        ],
        "paths": {**paths(), **{path: item for s in sections for path, item in s.paths.items()}},
        "components": {
            "schemas": {**SCHEMAS, **{name: schema for s in sections for name, schema in s.schemas.items()}},
            "responses": {name: _problem_response(status, text) for status, (name, text) in PROBLEMS.items()},
            "securitySchemes": {
                BEARER: {"type": "http", "scheme": "bearer", "description": "a personal access token (jdn_…)"}
            },
        },
    }


def paths() -> dict[str, Json]:
    category_ref = path_param("ref", "the category's id or slug", {"type": "string"})
    thread_id = path_param("thread_id", "the thread's id", integer())
    post_id = path_param("post_id", "the post's id", integer())
    return {
        "/openapi.json": {"get": operation("getOpenApi", "This document", "meta", ok("The OpenAPI document", {}))},
        "/me": {
            "get": operation("getMe", "The member the token belongs to", "members", ok("You", ref("Me")), auth=True)
        },
        "/resolve": {
            "get": operation(
                "resolve",
                "The local record named by a handle or address",
                "meta",
                ok("The record, with its `type`", ref("Resolved")),
                parameters=[query_param("q", "`name`, `name@host`, or an address such as `<base>/t/12`", True)],
                description="A remote name or address is fetched from its server (WebFinger, then a signed "
                "fetch) and stored; 404 when its server does not know it or does not answer.",
            )
        },
        "/follows": {
            "post": operation(
                "follow",
                "Follow a category or member, here or elsewhere",
                "members",
                ok("The follow: `accepted` here, `pending` until a remote server answers", ref("Follow"), 201),
                body=ref("FollowTarget"),
                auth=True,
            ),
            "delete": operation(
                "unfollow",
                "Stop following a category or member",
                "members",
                {"204": {"description": "No longer followed"}},
                body=ref("FollowTarget"),
                auth=True,
            ),
        },
        "/categories": {
            "get": operation(
                "listCategories",
                "Categories the caller may see",
                "categories",
                ok("Categories in their order", {"type": "array", "items": ref("Category")}),
            )
        },
        "/categories/{ref}": {
            "parameters": [category_ref],
            "get": operation("getCategory", "One category", "categories", ok("The category", ref("Category"))),
        },
        "/categories/{ref}/threads": {
            "parameters": [category_ref],
            "get": operation(
                "listCategoryThreads",
                "Threads, pinned first, then newest activity first",
                "categories",
                ok("One page of threads", ref("ThreadListing")),
                parameters=[
                    query_param("after", "the `next` cursor of the previous page"),
                    query_param("limit", "threads per page (1-100, default 30)", schema=integer()),
                ],
            ),
        },
        "/threads": {
            "post": operation(
                "createThread",
                "Start a thread",
                "threads",
                ok("The new thread", ref("ThreadPage"), 201, location=True),
                body=ref("NewThread"),
                auth=True,
            )
        },
        "/threads/{thread_id}": {
            "parameters": [thread_id],
            "get": operation(
                "getThread",
                "A thread and one page of its posts",
                "threads",
                ok("The thread", ref("ThreadPage")),
                parameters=[query_param("page", "page of posts (50 a page), from 1", schema=integer())],
            ),
        },
        "/threads/{thread_id}/posts": {
            "parameters": [thread_id],
            "post": operation(
                "createPost",
                "Reply in a thread",
                "threads",
                ok("The new post", ref("Post"), 201, location=True),
                body=ref("NewPost"),
                auth=True,
            ),
        },
        "/posts/{post_id}": {
            "parameters": [post_id],
            "get": operation("getPost", "One post", "posts", ok("The post", ref("Post"))),
            "patch": operation(
                "editPost",
                "Edit your post (its author only)",
                "posts",
                ok("The edited post", ref("Post")),
                body=ref("PostEdit"),
                auth=True,
            ),
            "delete": operation(
                "deletePost",
                "Delete your post (its author only); a placeholder stays",
                "posts",
                {"204": {"description": "Deleted"}},
                auth=True,
            ),
        },
        "/posts/{post_id}/revisions": {
            "parameters": [post_id],
            "get": operation(
                "getPostRevisions",
                "Earlier versions of a post, newest first",
                "posts",
                ok("The post and its history", ref("Revisions")),
            ),
        },
        "/posts/{post_id}/vote": {
            "parameters": [post_id],
            "put": operation(
                "votePost",
                "Vote on a post: 1 up, -1 down, 0 none (not on your own post)",
                "posts",
                ok("The post's counts and your vote", ref("Tally")),
                body=ref("Vote"),
                auth=True,
            ),
            "delete": operation(
                "unvotePost",
                "Withdraw your vote on a post",
                "posts",
                ok("The post's counts and your vote", ref("Tally")),
                auth=True,
            ),
        },
    }


def operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Json],
    *,
    parameters: list[Json] | None = None,
    body: Json | None = None,
    auth: bool = False,
    description: str = "",
) -> Json:
    """One call; `auth` calls need a token, the others take one optionally (the document's default)."""
    problems = WRITE if body is not None else (*READ, 403) if auth else READ
    found: Json = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": {**responses, **{str(status): _problem_ref(status) for status in problems}},
    }
    if description:
        found["description"] = description
    if parameters:
        found["parameters"] = parameters
    if body is not None:
        found["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if auth:
        found["security"] = [{BEARER: []}]
    return found


def ok(description: str, schema: Json, status: int = 200, *, location: bool = False) -> dict[str, Json]:
    response: Json = {"description": description, "content": {"application/json": {"schema": schema}}}
    if location:
        response["headers"] = {"Location": {"description": "the new record's API URL", "schema": string(fmt="uri")}}
    return {str(status): response}


def path_param(name: str, description: str, schema: Json) -> Json:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def query_param(name: str, description: str, required: bool = False, schema: Json | None = None) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _problem_ref(status: int) -> Json:
    return {"$ref": f"#/components/responses/{PROBLEMS[status][0]}"}


def _problem_response(status: int, description: str) -> Json:
    response: Json = {"description": description, "content": {"application/problem+json": {"schema": ref("Problem")}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": string(), "description": '`Bearer realm="api"…`'}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": integer(), "description": "seconds to wait"}}
    return response

"""Forum records -> ActivityStreams objects: a thread's `Page`, a reply's `Note`, a deleted post's `Tombstone`.

A thread is its first post as a `Page` whose id is the thread's (`/t/ID`); replies are `Note`s with
`inReplyTo`. Every post names the category's Group as `audience` and the thread's collection as
`context` (FEP-7888, FEP-1b12), so Lemmy, PieFed, NodeBB and Mastodon each find what they read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forum.models import Actor, Post, Thread

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
# The extension terms we send, defined inline so no peer has to fetch a context of ours.
EXTENSIONS: dict[str, Any] = {
    "toot": "http://joinmastodon.org/ns#",
    "lemmy": "https://join-lemmy.org/ns#",
    "sensitive": "as:sensitive",
    "Hashtag": "as:Hashtag",
    "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
    "featured": {"@id": "toot:featured", "@type": "@id"},
    "discoverable": "toot:discoverable",
    "indexable": "toot:indexable",
    "moderators": {"@id": "lemmy:moderators", "@type": "@id"},
    "postingRestrictedToMods": "lemmy:postingRestrictedToMods",
    "stickied": "lemmy:stickied",
}
CONTEXT: list[Any] = [AS_CONTEXT, SECURITY_CONTEXT, EXTENSIONS]

Document = dict[str, Any]


@dataclass(frozen=True)
class PostSubject:
    """What a post's document needs, loaded once: the post, its thread, its author and the Group."""

    post: Post
    thread: Thread
    author: Actor
    group: Actor
    # The ap_id of the post answered, or None for the thread's first post.
    parent_ap_id: str | None
    # Remote authors of the posts answered and mentioned: addressed so their servers hear of it.
    also_to: tuple[str, ...] = ()
    # The remote actors the text mentions, as (ap_id, @name@host): `Mention` tags.
    mentions: tuple[tuple[str, str], ...] = ()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def post_id(subject: PostSubject) -> str:
    """A thread's first post is the thread's Page; its id is the thread's id."""
    if subject.post.position == 1 and subject.thread.ap_id:
        return subject.thread.ap_id
    assert subject.post.ap_id is not None
    return subject.post.ap_id


def post_document(subject: PostSubject, *, with_context: bool = True) -> Document:
    """The `Page` (first post) or `Note` (reply); a deleted or removed post is a `Tombstone`."""
    post, thread = subject.post, subject.thread
    object_id = post_id(subject)
    if post.is_gone:
        return tombstone(object_id, "Page" if post.position == 1 else "Note", post.deleted_at or post.removed_at)
    first = post.position == 1
    document: Document = {"@context": CONTEXT} if with_context else {}
    document.update(
        {
            "id": object_id,
            "type": "Page" if first else "Note",
            "attributedTo": subject.author.ap_id,
            "to": [subject.group.ap_id, PUBLIC] if first else [PUBLIC],
            "cc": [subject.group.ap_id, *subject.also_to] if not first else list(subject.also_to),
            "audience": subject.group.ap_id,
            "context": thread.context_id,
            "content": post.html,
            "mediaType": "text/html",
            "source": {"content": post.source, "mediaType": "text/markdown"},
            "published": iso(post.created_at),
            "url": post.remote_url or _html_url(subject),
            "sensitive": False,
        }
    )
    if first:
        document["name"] = thread.title
        document["stickied"] = thread.pinned
        document["commentsEnabled"] = not thread.locked
        document["replies"] = thread.context_id
    else:
        document["inReplyTo"] = subject.parent_ap_id or thread.ap_id
    if post.edited_at is not None:
        document["updated"] = iso(post.edited_at)
    if subject.mentions:
        document["tag"] = [{"type": "Mention", "href": href, "name": name} for href, name in subject.mentions]
    return document


def tombstone(object_id: str, former_type: str, deleted: datetime | None) -> Document:
    document: Document = {"@context": CONTEXT, "id": object_id, "type": "Tombstone", "formerType": former_type}
    if deleted is not None:
        document["deleted"] = iso(deleted)
    return document


def ordered_collection(collection_id: str, total: int, first_page: str | None) -> Document:
    document: Document = {"@context": CONTEXT, "id": collection_id, "type": "OrderedCollection", "totalItems": total}
    if first_page is not None:
        document["first"] = first_page
    return document


def collection_page(
    page_id: str, part_of: str, items: list[Any], next_page: str | None, *, attributed_to: str | None = None
) -> Document:
    document: Document = {
        "@context": CONTEXT,
        "id": page_id,
        "type": "OrderedCollectionPage",
        "partOf": part_of,
        "orderedItems": items,
    }
    if next_page is not None:
        document["next"] = next_page
    if attributed_to is not None:
        document["attributedTo"] = attributed_to
    return document


def _html_url(subject: PostSubject) -> str:
    if subject.post.position == 1 and subject.thread.ap_id:
        return subject.thread.ap_id
    # A reply's own address redirects to its place on the right page of the thread.
    return str(subject.post.ap_id)

"""The ActivityStreams vocabulary Jardin speaks: namespaces, the public collection, media types, type names,
and the table of terms the internal document shape is made of (each with the IRI it stands for)."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
AS_NAMESPACE = "https://www.w3.org/ns/activitystreams#"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
SECURITY_NAMESPACE = "https://w3id.org/security#"
IDENTITY_CONTEXT = "https://w3id.org/identity/v1"
LDP_NAMESPACE = "http://www.w3.org/ns/ldp#"
TOOT_NAMESPACE = "http://joinmastodon.org/ns#"
LEMMY_NAMESPACE = "https://join-lemmy.org/ns#"
LITEPUB_NAMESPACE = "http://litepub.social/ns#"
PEERTUBE_NAMESPACE = "https://joinpeertube.org/ns#"
SCHEMA_NAMESPACE = "http://schema.org/"

PUBLIC = AS_NAMESPACE + "Public"
# The spellings Mastodon also accepts for the public collection (ActivityPub §5.6).
PUBLIC_ALIASES = frozenset({"as:Public", "Public"})

ACTIVITY_JSON = "application/activity+json"
LD_JSON = "application/ld+json"
LD_JSON_ACTIVITYSTREAMS = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
ACTIVITYPUB_MEDIA_TYPES = frozenset({ACTIVITY_JSON, LD_JSON_ACTIVITYSTREAMS})

AS_ACTIVITY_TYPES = frozenset(
    {
        "Accept", "Add", "Announce", "Arrive", "Block", "Create", "Delete", "Dislike", "Flag", "Follow",
        "Ignore", "Invite", "Join", "Leave", "Like", "Listen", "Move", "Offer", "Question", "Read", "Reject",
        "Remove", "TentativeAccept", "TentativeReject", "Travel", "Undo", "Update", "View",
    }
)  # fmt: skip
# Lemmy's Lock (FEP-1b12 moderation), report resolution and warnings: no context defines them, so they
# stay plain names (`_:Lock` under the ActivityStreams `@vocab`).
LEMMY_ACTIVITY_TYPES = frozenset({"Lock", "Resolve", "Warn"})
ACTIVITY_TYPES = AS_ACTIVITY_TYPES | LEMMY_ACTIVITY_TYPES
ACTOR_TYPES = frozenset({"Application", "Group", "Organization", "Person", "Service"})
COLLECTION_TYPES = frozenset({"Collection", "OrderedCollection", "CollectionPage", "OrderedCollectionPage"})
OBJECT_TYPES = frozenset(
    {
        "Article", "Audio", "Document", "Event", "Image", "Note", "Page", "Place", "Profile",
        "Relationship", "Tombstone", "Video", "Object", "Link", "Mention",
    }
)  # fmt: skip
# Type names that are not ActivityStreams core but that the fediverse sends under well-known IRIs.
EXTENSION_TYPES: dict[str, str] = {
    "Hashtag": AS_NAMESPACE + "Hashtag",
    "Emoji": TOOT_NAMESPACE + "Emoji",
    "ChatMessage": LITEPUB_NAMESPACE + "ChatMessage",
    "PropertyValue": SCHEMA_NAMESPACE + "PropertyValue",
    "CryptographicKey": SECURITY_NAMESPACE + "Key",
    "RsaSignature2017": SECURITY_NAMESPACE + "RsaSignature2017",
    "DataIntegrityProof": SECURITY_NAMESPACE + "DataIntegrityProof",
    "Multikey": SECURITY_NAMESPACE + "Multikey",
}
# AS 2.0 also defines these non-activity, non-actor classes.
_MORE_AS_TYPES = frozenset({"Activity", "IntransitiveActivity", "IsContact", "IsFollowedBy", "IsFollowing", "IsMember"})

TYPE_IRIS: dict[str, str] = {
    **{name: AS_NAMESPACE + name for name in AS_ACTIVITY_TYPES | ACTOR_TYPES | COLLECTION_TYPES | OBJECT_TYPES},
    **{name: AS_NAMESPACE + name for name in _MORE_AS_TYPES},
    **EXTENSION_TYPES,
}


class Term(NamedTuple):
    """One key of the internal shape: its name, the IRI it stands for, whether its value is always a list,
    and whether its string values are references (`@type: @id`)."""

    name: str
    iri: str
    always_list: bool = False
    reference: bool = True


_AS = AS_NAMESPACE
_SEC = SECURITY_NAMESPACE

TERMS: tuple[Term, ...] = (
    # Addressing: always lists, so `PUBLIC in doc["to"]` is the whole test.
    Term("to", _AS + "to", True),
    Term("cc", _AS + "cc", True),
    Term("bto", _AS + "bto", True),
    Term("bcc", _AS + "bcc", True),
    Term("audience", _AS + "audience", True),
    # Activities.
    Term("actor", _AS + "actor"),
    Term("object", _AS + "object"),
    Term("target", _AS + "target"),
    Term("origin", _AS + "origin"),
    Term("result", _AS + "result"),
    Term("instrument", _AS + "instrument"),
    # Objects.
    Term("attributedTo", _AS + "attributedTo"),
    Term("inReplyTo", _AS + "inReplyTo"),
    Term("context", _AS + "context"),
    Term("generator", _AS + "generator"),
    Term("replies", _AS + "replies"),
    Term("likes", _AS + "likes"),
    Term("shares", _AS + "shares"),
    Term("tag", _AS + "tag", True),
    Term("attachment", _AS + "attachment", True),
    Term("url", _AS + "url", True),
    Term("icon", _AS + "icon", True),
    Term("image", _AS + "image", True),
    Term("preview", _AS + "preview"),
    Term("href", _AS + "href"),
    Term("rel", _AS + "rel", reference=False),
    Term("hreflang", _AS + "hreflang", reference=False),
    Term("name", _AS + "name", reference=False),
    Term("content", _AS + "content", reference=False),
    Term("summary", _AS + "summary", reference=False),
    Term("mediaType", _AS + "mediaType", reference=False),
    Term("published", _AS + "published", reference=False),
    Term("updated", _AS + "updated", reference=False),
    Term("deleted", _AS + "deleted", reference=False),
    Term("startTime", _AS + "startTime", reference=False),
    Term("endTime", _AS + "endTime", reference=False),
    Term("formerType", _AS + "formerType"),
    Term("width", _AS + "width", reference=False),
    Term("height", _AS + "height", reference=False),
    Term("duration", _AS + "duration", reference=False),
    Term("sensitive", _AS + "sensitive", reference=False),
    Term("source", _AS + "source", reference=False),
    Term("oneOf", _AS + "oneOf", True),
    Term("anyOf", _AS + "anyOf", True),
    Term("closed", _AS + "closed", reference=False),
    # Collections: `orderedItems` is `as:items` with a `@list` container.
    Term("items", _AS + "items", True),
    Term("totalItems", _AS + "totalItems", reference=False),
    Term("first", _AS + "first"),
    Term("last", _AS + "last"),
    Term("next", _AS + "next"),
    Term("prev", _AS + "prev"),
    Term("current", _AS + "current"),
    Term("partOf", _AS + "partOf"),
    Term("startIndex", _AS + "startIndex", reference=False),
    # Actors.
    Term("preferredUsername", _AS + "preferredUsername", reference=False),
    Term("inbox", LDP_NAMESPACE + "inbox"),
    Term("outbox", _AS + "outbox"),
    Term("followers", _AS + "followers"),
    Term("following", _AS + "following"),
    Term("liked", _AS + "liked"),
    Term("streams", _AS + "streams", True),
    Term("endpoints", _AS + "endpoints"),
    Term("sharedInbox", _AS + "sharedInbox"),
    Term("manuallyApprovesFollowers", _AS + "manuallyApprovesFollowers", reference=False),
    Term("movedTo", _AS + "movedTo"),
    Term("alsoKnownAs", _AS + "alsoKnownAs", True),
    Term("publicKey", _SEC + "publicKey"),
    Term("owner", _SEC + "owner"),
    Term("publicKeyPem", _SEC + "publicKeyPem", reference=False),
    Term("proof", _SEC + "proof"),
    # Extensions: Mastodon, Lemmy, PeerTube, schema.org as Lemmy and PeerTube use it.
    Term("featured", TOOT_NAMESPACE + "featured"),
    Term("featuredTags", TOOT_NAMESPACE + "featuredTags"),
    Term("discoverable", TOOT_NAMESPACE + "discoverable", reference=False),
    Term("indexable", TOOT_NAMESPACE + "indexable", reference=False),
    Term("suspended", TOOT_NAMESPACE + "suspended", reference=False),
    Term("votersCount", TOOT_NAMESPACE + "votersCount", reference=False),
    Term("blurhash", TOOT_NAMESPACE + "blurhash", reference=False),
    Term("moderators", LEMMY_NAMESPACE + "moderators"),
    Term("postingRestrictedToMods", LEMMY_NAMESPACE + "postingRestrictedToMods", reference=False),
    Term("stickied", LEMMY_NAMESPACE + "stickied", reference=False),
    Term("distinguished", LEMMY_NAMESPACE + "distinguished", reference=False),
    Term("removeData", LEMMY_NAMESPACE + "removeData", reference=False),
    Term("commentsEnabled", PEERTUBE_NAMESPACE + "commentsEnabled", reference=False),
    Term("language", SCHEMA_NAMESPACE + "inLanguage", reference=False),
    Term("identifier", SCHEMA_NAMESPACE + "identifier", reference=False),
)

# Language maps (`contentMap`…) share their IRI with the plain term; they are told apart by the value's language.
LANGUAGE_MAPS: dict[str, str] = {"content": "contentMap", "name": "nameMap", "summary": "summaryMap"}
ORDERED_ITEMS = "orderedItems"
ADDRESSING = frozenset({"to", "cc", "bto", "bcc", "audience"})

# Namespace spellings that mean the same vocabulary: the first of each pair is rewritten to the second.
IRI_ALIASES: tuple[tuple[str, str], ...] = (
    ("http://www.w3.org/ns/activitystreams#", AS_NAMESPACE),
    ("https://schema.org/", SCHEMA_NAMESPACE),
    ("http://schema.org#", SCHEMA_NAMESPACE),
    ("https://schema.org#", SCHEMA_NAMESPACE),
    ("https://joinmastodon.org/ns#", TOOT_NAMESPACE),
    ("http://join-lemmy.org/ns#", LEMMY_NAMESPACE),
    ("https://litepub.social/ns#", LITEPUB_NAMESPACE),
)


@lru_cache(maxsize=4096)
def canonical_iri(iri: str) -> str:
    """The spelling of `iri` the term table uses (namespace variants folded together)."""
    for variant, canonical in IRI_ALIASES:
        if iri.startswith(variant):
            return canonical + iri[len(variant) :]
    return iri

"""Every real payload from other fediverse software (the shared samples) parses, normalizes, and is either
understood or refused with a reason; the direct reading and JSON-LD agree on each; nothing is fetched."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activitypub.protocol.jsonld import Normalized, Normalizer, parse_json
from activitypub.understand import Refused, Understanding, understand

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "fediverse-samples"
if not SAMPLES.is_dir():
    pytest.skip("the shared fediverse samples are not on this machine", allow_module_level=True)

PATHS = sorted(SAMPLES.rglob("*.json"))
NAMES = [str(path.relative_to(SAMPLES)) for path in PATHS]

EXPECTED = {
    "lemmy/activities/create_or_update/create_page.json": "thread",
    "lemmy/activities/create_or_update/create_comment.json": "reply",
    "lemmy/activities/create_or_update/update_page.json": "edit",
    "lemmy/activities/voting/like_note.json": "vote-up",
    "lemmy/activities/voting/dislike_page.json": "vote-down",
    "lemmy/activities/voting/undo_like_note.json": "undo",
    "lemmy/activities/following/follow.json": "follow",
    "lemmy/activities/following/accept.json": "accept",
    "lemmy/activities/community/report_page.json": "report",
    "lemmy/activities/community/lock_page.json": "moderation",
    "lemmy/activities/community/add_featured_post.json": "moderation",
    "lemmy/activities/community/update_community.json": "moderation",
    "lemmy/activities/community/announce_create_page.json": "announce",
    "lemmy/activities/deletion/delete_page.json": "delete",
    "lemmy/activities/deletion/remove_note.json": "moderation",
    "lemmy/activities/block/block_user.json": "block",
    "lemmy/objects/group.json": "actor",
    "lemmy/objects/page.json": "thread",
    "lemmy/objects/tombstone.json": "tombstone",
    "lemmy/collections/group_moderators.json": "collection",
    "mastodon/activities/create_note.json": "reply",  # it answers a status on mamot.fr
    "mastodon/objects/page.json": "thread",  # a Note without inReplyTo, addressed to a Lemmy community
    "mastodon/activities/flag.json": "report",
    "mastodon/activities/delete.json": "delete",
    "mastodon/objects/person.json": "actor",
    "pleroma/activities/create_note.json": "reply",
    "friendica/activities/create_page_2.json": "thread",
    "lotide/activities/create_page.json": "thread",
    "peertube/activities/announce_video.json": "announce",
}
REFUSED = {
    "lemmy/activities/create_or_update/create_private_message.json": "private messages are not supported",
    "lemmy/activities/create_or_update/create_private_message_0.19.json": "chat messages",
    "lemmy/objects/private_message.json": "private messages are not supported",
    "mastodon/activities/private_message.json": "private messages are not supported",
    "pleroma/objects/chat_message.json": "chat messages",
    "peertube/objects/video.json": "not a forum post: Video is not supported",
    "mobilizon/objects/event.json": "not a forum post: Event is not supported",
    "lemmy/activities/community/warn.json": "Warn activities are not supported",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sample ids point at hosts that do not exist: any name lookup or connection fails the test."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise OSError("no network while reading samples")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
    assert attempts == []


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer()


def read(normalizer: Normalizer, name: str) -> tuple[Normalized, Understanding | Refused]:
    normalized = normalizer.normalize(parse_json((SAMPLES / name).read_bytes()))
    try:
        return normalized, understand(normalized.document)
    except Refused as refused:
        return normalized, refused


def test_the_samples_are_all_there() -> None:
    assert len(PATHS) >= 100
    assert set(EXPECTED) | set(REFUSED) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_sample_is_understood_or_refused_with_a_reason(normalizer: Normalizer, name: str) -> None:
    normalized, outcome = read(normalizer, name)
    assert "@context" not in normalized.document
    for key in ("to", "cc", "bto", "bcc", "audience", "tag", "attachment"):
        assert isinstance(normalized.document.get(key, []), list), key
    if isinstance(outcome, Refused):
        assert outcome.reason.strip()
    else:
        assert outcome.becomes
        assert outcome.summary or outcome.becomes in ("tombstone", "collection")


@pytest.mark.parametrize("name", NAMES)
def test_the_direct_reading_and_json_ld_give_the_same_shape(normalizer: Normalizer, name: str) -> None:
    document = parse_json((SAMPLES / name).read_bytes())
    direct = normalizer.normalize(document)
    if direct.method == "plain-terms":
        pytest.skip("a context of this document is not bundled: JSON-LD cannot read it offline")
    assert direct.method in ("terms", "no-context"), "the samples need no JSON-LD processing"
    assert normalizer.normalize(document, use_jsonld=True).document == direct.document


@pytest.mark.parametrize(("name", "becomes"), sorted(EXPECTED.items()))
def test_what_known_samples_become(normalizer: Normalizer, name: str, becomes: str) -> None:
    _, outcome = read(normalizer, name)
    assert isinstance(outcome, Understanding), outcome
    assert outcome.becomes == becomes


@pytest.mark.parametrize(("name", "reason"), sorted(REFUSED.items()))
def test_what_known_samples_are_refused_for(normalizer: Normalizer, name: str, reason: str) -> None:
    _, outcome = read(normalizer, name)
    assert isinstance(outcome, Refused)
    assert reason in outcome.reason


def test_pleroma_is_read_plainly_without_fetching_its_instance_context(normalizer: Normalizer) -> None:
    normalized, outcome = read(normalizer, "pleroma/objects/note.json")
    assert normalized.method == "plain-terms"
    assert isinstance(outcome, Understanding) and outcome.becomes == "reply"


def test_lemmy_extension_terms_arrive_under_their_names(normalizer: Normalizer) -> None:
    normalized, _ = read(normalizer, "lemmy/objects/group.json")
    group = normalized.document
    assert group["postingRestrictedToMods"] is False
    assert group["endpoints"] == {"sharedInbox": "https://enterprise.lemmy.ml/inbox"}
    assert group["publicKey"]["owner"] == group["id"]
    assert group["featured"] == "https://enterprise.lemmy.ml/c/tenforward//featured"
    assert [language["identifier"] for language in group["language"]] == ["fr", "de"]

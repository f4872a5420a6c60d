"""How Jardin understands a normalized document offline: what it becomes, or why it is refused; and the text
`forum federation inspect` prints."""

from __future__ import annotations

import json
from typing import Any

import pytest

from activitypub.protocol.jsonld import Normalizer
from activitypub.protocol.vocabulary import PUBLIC
from activitypub.understand import Refused, Understanding, inspect_bytes, render, understand

AS = "https://www.w3.org/ns/activitystreams"
ANA = "https://a.example/u/ana"
GARDEN = "https://forum.example/c/garden"


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer()


def read(normalizer: Normalizer, document: dict[str, Any]) -> Understanding:
    return understand(normalizer.normalize({"@context": AS, **document}).document)


def page(**extra: Any) -> dict[str, Any]:
    return {
        "id": "https://a.example/posts/1",
        "type": "Page",
        "attributedTo": ANA,
        "name": "Seed swap in spring",
        "content": "<p>Who has <b>tomato</b> seeds?</p>",
        "to": [GARDEN, PUBLIC],
        "audience": GARDEN,
        **extra,
    }


def create(obj: Any, **extra: Any) -> dict[str, Any]:
    return {"id": "https://a.example/activities/1", "type": "Create", "actor": ANA, "object": obj, **extra}


def act(kind: str, obj: Any, **extra: Any) -> dict[str, Any]:
    """An activity of Ana's (on her host) about `obj`."""
    return {"id": f"https://a.example/{kind.lower()}/1", "type": kind, "actor": ANA, "object": obj, **extra}


def test_a_page_in_a_group_becomes_a_thread_with_its_lines(normalizer: Normalizer) -> None:
    result = read(normalizer, create(page()))
    assert (result.becomes, result.activity, result.object_type) == ("thread", "Create", "Page")
    assert "title: Seed swap in spring" in result.summary
    assert f"audience: {GARDEN}" in result.summary
    assert "text: Who has tomato seeds?" in result.summary
    assert render(result).splitlines()[0] == "becomes: thread (Create of Page)"


@pytest.mark.parametrize(
    ("document", "becomes"),
    [
        (create(page(inReplyTo="https://b.example/posts/7", type="Note")), "reply"),
        (create(page(to=[f"{ANA}/followers"], audience=None)), "thread"),  # followers-only is not private
        ({**create(page()), "type": "Update"}, "edit"),
        (act("Like", "https://b.example/p/1"), "vote-up"),
        (act("Dislike", "https://b.example/1"), "vote-down"),
        (act("Follow", GARDEN), "follow"),
        (act("Delete", "https://a.example/posts/1"), "delete"),
        (act("Delete", ANA), "delete"),
        (act("Delete", "https://b.example/p/1"), "moderation"),
        (act("Lock", "https://b.example/p/1"), "moderation"),
        (
            act("Add", "https://a.example/posts/1", target=f"{GARDEN}/featured"),
            "moderation",
        ),
        (act("Block", "https://b.example/u/bo"), "block"),
        (
            act("Flag", ["https://b.example/u/bo", "https://b.example/p/1"], content="spam"),
            "report",
        ),
        (act("Announce", "https://b.example/p/1"), "announce"),
        ({"id": ANA, "type": "Person", "preferredUsername": "ana", "inbox": f"{ANA}/inbox"}, "actor"),
        ({"id": f"{ANA}/outbox", "type": "OrderedCollection", "totalItems": 0}, "collection"),
        ({"id": "https://a.example/posts/2", "type": "Tombstone"}, "tombstone"),
        ({"id": "https://a.example/i/1", "type": "Image", "url": "https://a.example/i/1.png"}, "object"),
    ],
)  # fmt: skip
def test_what_documents_become(normalizer: Normalizer, document: dict[str, Any], becomes: str) -> None:
    assert read(normalizer, document).becomes == becomes


def test_an_undo_says_what_it_undoes(normalizer: Normalizer) -> None:
    like = act("Like", "https://b.example/p/1")
    result = read(normalizer, {"id": "https://a.example/u/1", "type": "Undo", "actor": ANA, "object": like})
    assert (result.becomes, result.object_type) == ("undo", "Like")
    assert "undoes: Like" in result.summary


def test_an_announced_activity_is_understood_inside(normalizer: Normalizer) -> None:
    announce = {"id": "https://forum.example/a/1", "type": "Announce", "actor": GARDEN, "object": create(page())}
    result = read(normalizer, announce)
    assert result.becomes == "announce"
    assert "announces: thread (Create of Page)" in result.summary


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"type": "Like", "actor": ANA, "object": "https://b.example/1"}, "has no id"),
        ({"id": "urn:uuid:1", "type": "Like", "actor": ANA, "object": "https://b.example/1"}, "not an http"),
        ({"id": "https://a.example/l/1", "type": "Like", "object": "https://b.example/1"}, "has no actor"),
        (act("Like", "https://b.example/1", id="https://evil.example/l/1"), "different hosts"),
        (act("Like", "https://b.example/1", actor=[ANA, f"{ANA}2"]), "more than one actor"),
        (act("Like", None), "has no object"),
        (create("https://a.example/posts/1"), "must embed its object"),
        (create(page(id="https://evil.example/posts/1")), "not on the host of its author"),
        (create(page(attributedTo="https://a.example/u/bo")), "attributed to https://a.example/u/bo"),
        (create(page(attributedTo=None)), "needs an author"),
        (create(page(to=["https://b.example/u/bo"], cc=[], audience=None)), "private messages are not supported"),
        (create(page(type="ChatMessage")), "chat messages"),
        (create(page(type="Video")), "not a forum post: Video is not supported"),
        (create(page(type="Question")), "not a forum post: Question"),
        (create({"id": ANA, "type": "Person"}), "Create of a Person is not supported"),
        (act("Update", {"id": "https://a.example/u/bo", "type": "Person"}), "only update its own profile"),
        (act("Undo", act("Like", "https://b.example/1", actor="https://a.example/u/bo")), "its own activities"),
        (act("Add", "https://a.example/p/1"), "needs a target"),
        (act("Accept", act("Follow", "https://a.example/u/bo", actor="https://b.example/u/cy")), "follows of itself"),
        (act("Move", ANA), "Move activities are not supported"),
        ({"id": "https://forum.example/a/1", "type": "Announce", "actor": GARDEN,
          "object": create(page(type="ChatMessage"))}, "the announced activity would be refused: chat messages"),
        ({"id": ANA, "type": "Person", "publicKey": {"id": "https://a.example/k", "owner": "https://a.example/u/bo"}},
         "key belongs to"),
        ({"id": "https://a.example/x/1", "type": "Frobnicate"}, "not one Jardin knows"),
        ({"id": "https://a.example/x/1"}, "has no type"),
    ],
)  # fmt: skip
def test_what_is_refused_and_why(normalizer: Normalizer, document: dict[str, Any], reason: str) -> None:
    with pytest.raises(Refused, match=reason) as refused:
        read(normalizer, document)
    assert refused.value.reason


def test_inspect_prints_the_normalized_form_and_what_it_becomes(normalizer: Normalizer) -> None:
    raw = json.dumps({"@context": AS, **create(page(to=GARDEN, cc="as:Public"))}).encode()
    code, text = inspect_bytes(raw, normalizer)
    assert code == 0
    normalized, _, understood = text.partition("\n\n")
    assert normalized.startswith("normalized, read by its terms")
    assert json.loads(normalized.split("\n", 1)[1])["object"]["cc"] == [PUBLIC]
    assert understood.startswith("becomes: thread (Create of Page)\n  actor: https://a.example/u/ana")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "refused: the body is not valid JSON"),
        (b"[" * 1000 + b"]" * 1000, "refused: the JSON nests deeper than 64 levels"),
        (b'{"@context": "https://evil.example/ctx", "id": "https://a.example/1", "type": "Note"}', "cannot be trusted"),
    ],
)
def test_inspect_refuses_unreadable_documents_with_exit_code_1(normalizer: Normalizer, raw: bytes, reason: str) -> None:
    code, text = inspect_bytes(raw, normalizer)
    assert code == 1
    assert reason in text
    assert "\n" not in text


def test_inspect_shows_the_normalized_form_and_the_refusal(normalizer: Normalizer) -> None:
    signature = {"type": "RsaSignature2017", "creator": f"{ANA}#main-key", "signatureValue": "AAAA"}
    document = {"@context": AS, **create(page(type="Video")), "signature": signature}
    code, text = inspect_bytes(json.dumps(document).encode(), normalizer)
    assert code == 1
    assert f"carries an RsaSignature2017 by {ANA}#main-key" in text
    assert text.endswith("refused: not a forum post: Video is not supported")

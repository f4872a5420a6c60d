"""JSON-LD at the edge: safe parsing, the offline loader, the internal shape, attacks on the reading (deep
nesting, unknown contexts, redefined terms, compact IRIs)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pyld import jsonld as pyld_jsonld

from activitypub.protocol.contexts import ContextNotBundled, OfflineLoader
from activitypub.protocol.jsonld import MAX_PLANS, DocumentError, Normalizer, parse_json
from activitypub.protocol.vocabulary import PUBLIC

AS = "https://www.w3.org/ns/activitystreams"
SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "fediverse-samples"
UNKNOWN = "https://evil.example/schemas/litepub-0.1.jsonld"


class SpyLoader(OfflineLoader):
    """The real offline loader, remembering every URL pyld asked it for."""

    def __init__(self) -> None:
        super().__init__()
        self.requested: list[str] = []

    def __call__(self, url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        self.requested.append(url)
        return super().__call__(url, options)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records any attempt to resolve a name or open a connection (pyld would swallow an exception)."""
    attempts: list[str] = []

    def refuse_resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(f"getaddrinfo {host}")
        raise OSError("no network in this test")

    def refuse_connect(self: socket.socket, address: Any) -> None:
        attempts.append(f"connect {address}")
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse_resolve)
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    yield attempts


@pytest.fixture
def spy() -> SpyLoader:
    return SpyLoader()


@pytest.fixture
def normalizer(spy: SpyLoader) -> Normalizer:
    return Normalizer(loader=spy)


def note(**extra: Any) -> dict[str, Any]:
    return {
        "@context": AS,
        "id": "https://a.example/notes/1",
        "type": "Note",
        "attributedTo": "https://a.example/u/ana",
        "content": "<p>hello</p>",
        **extra,
    }


# --- parsing -------------------------------------------------------------------------------------------------


def test_parse_json_returns_the_object() -> None:
    assert parse_json(b'{"type": "Note", "name": "caf\xc3\xa9"}') == {"type": "Note", "name": "café"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"name": "caf\xe9"}', "not UTF-8"),
        (b'{"type": "Note",}', "not valid JSON"),
        (b'{"n": NaN}', "not valid JSON"),
        (b'{"width": 1e400}', "the number 1e400 is too large"),
        (b'{"width": -2.5E999}', "the number -2.5E999 is too large"),
        (b"[1, 2]", "list, not an object"),
        (b'"Note"', "str, not an object"),
        (b"null", "null, not an object"),
    ],
)
def test_parse_json_refuses_what_is_not_a_json_object(body: bytes, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_json(body)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_refused_without_recursion_error(depth: int) -> None:
    arrays = "[" * depth + "]" * depth
    objects = '{"a":' * depth + "1" + "}" * depth
    for body in (arrays, '{"x": ' + arrays + "}", objects):
        with pytest.raises(DocumentError, match="nests deeper than 64 levels"):
            parse_json(body)


def test_a_string_full_of_escaped_quotes_is_scanned_in_linear_time() -> None:
    # A naive string pattern backtracks once per quote: seconds for 40 kB, minutes for this.
    body = '{"content": "' + '\\"' * 200_000
    started = time.monotonic()
    with pytest.raises(DocumentError, match="not valid JSON"):
        parse_json(body)
    assert time.monotonic() - started < 1


def test_depth_limit_is_exact_and_brackets_inside_strings_do_not_count() -> None:
    assert isinstance(parse_json('{"a": ' + "[" * 63 + "]" * 63 + "}")["a"], list)
    with pytest.raises(DocumentError):
        parse_json('{"a": ' + "[" * 64 + "]" * 64 + "}")
    text = "[{" * 5_000 + '\\"'
    assert parse_json(json.dumps({"content": text})) == {"content": text}


def test_a_deep_document_given_as_a_dict_is_refused_too(normalizer: Normalizer) -> None:
    deep: dict[str, Any] = note()
    inner = deep
    for _ in range(100):
        inner["object"] = {"type": "Note"}
        inner = inner["object"]
    with pytest.raises(DocumentError, match="nests deeper"):
        normalizer.normalize(deep)


# --- the offline loader --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        AS,
        "http://www.w3.org/ns/activitystreams",
        "https://www.w3.org/ns/activitystreams#",
        "https://w3id.org/security/v1/",
        "http://joinmastodon.org/ns",
        "https://joinmastodon.org/ns#",
        "https://join-lemmy.org/context.json",
        "https://schema.org",
    ],
)
def test_the_loader_serves_bundled_contexts_under_their_usual_spellings(url: str) -> None:
    remote = OfflineLoader()(url, {})
    assert isinstance(remote["document"]["@context"], dict | list)
    assert remote["documentUrl"].startswith(("https://", "http://"))


def test_the_loader_refuses_an_unbundled_url_without_any_network(network: list[str]) -> None:
    with pytest.raises(ContextNotBundled, match="never fetched"):
        OfflineLoader()(UNKNOWN, {})
    doc = {"@context": [AS, UNKNOWN], "id": "https://a.example/1", "type": "Note"}
    with pytest.raises(pyld_jsonld.JsonLdError):
        pyld_jsonld.expand(doc, {"documentLoader": OfflineLoader()})
    assert network == []


def test_the_loader_gives_a_fresh_copy_each_time() -> None:
    loader = OfflineLoader()
    loader(AS, {})["document"]["@context"]["content"] = "http://evil.example/x"
    assert loader(AS, {})["document"]["@context"]["content"] == "as:content"


# --- the internal shape --------------------------------------------------------------------------------------


def test_the_shape_has_lists_where_promised_and_no_context(normalizer: Normalizer) -> None:
    result = normalizer.normalize(
        note(to="as:Public", cc="Public", tag={"type": "Hashtag", "name": "#garden"}, url="https://a.example/@ana/1")
    )
    assert result.method == "terms"
    assert result.document == {
        "id": "https://a.example/notes/1",
        "type": "Note",
        "attributedTo": "https://a.example/u/ana",
        "cc": [PUBLIC],
        "content": "<p>hello</p>",
        "tag": [{"type": "Hashtag", "name": "#garden"}],
        "to": [PUBLIC],
        "url": ["https://a.example/@ana/1"],
    }


def test_embedded_objects_are_normalized_and_bare_references_become_ids(normalizer: Normalizer) -> None:
    activity = {
        "@context": [AS, "https://w3id.org/security/v1"],
        "id": "https://g.example/activities/1",
        "type": "Announce",
        "actor": {"id": "https://g.example/c/garden"},
        "object": {**note(to=PUBLIC, summary=None, unknownTerm=1), "@context": AS},
    }
    document = normalizer.normalize(activity).document
    assert document["actor"] == "https://g.example/c/garden"
    assert document["object"]["to"] == [PUBLIC]
    assert "summary" not in document["object"] and "unknownTerm" not in document["object"]


def test_language_maps_keep_lowercased_tags_and_a_default_language_is_ignored(normalizer: Normalizer) -> None:
    doc = note(contentMap={"EN": "<p>hello</p>", "fr": "<p>salut</p>"})
    doc["@context"] = [AS, {"@language": "und"}]
    for use_jsonld in (False, True):
        document = normalizer.normalize(doc, use_jsonld=use_jsonld).document
        assert document["content"] == "<p>hello</p>"
        assert document["contentMap"] == {"en": "<p>hello</p>", "fr": "<p>salut</p>"}


def test_extension_terms_are_read_under_their_own_names(normalizer: Normalizer) -> None:
    group = {
        "@context": ["https://join-lemmy.org/context.json", AS],
        "id": "https://l.example/c/garden",
        "type": "Group",
        "moderators": "https://l.example/c/garden/moderators",
        "postingRestrictedToMods": True,
        "featured": "https://l.example/c/garden/featured",
        "expires": "2030-01-01T00:00:00Z",  # Lemmy's context maps it to as:endTime
        "publicKey": {"id": "https://l.example/c/garden#main-key", "owner": "https://l.example/c/garden"},
    }
    fast = normalizer.normalize(group)
    assert fast.method == "terms"
    assert fast.document["moderators"] == "https://l.example/c/garden/moderators"
    assert fast.document["postingRestrictedToMods"] is True
    assert fast.document["endTime"] == "2030-01-01T00:00:00Z"
    assert fast.document["publicKey"]["owner"] == "https://l.example/c/garden"
    assert normalizer.normalize(group, use_jsonld=True).document == fast.document


def test_a_document_without_context_is_read_plainly_only_if_it_looks_like_activitystreams(
    normalizer: Normalizer,
) -> None:
    plain = normalizer.normalize({"id": "https://l.example/post/1", "type": "Page", "name": "Hi", "to": PUBLIC})
    assert plain.method == "no-context"
    assert plain.document["to"] == [PUBLIC]
    with pytest.raises(DocumentError, match="no @context and no id and type"):
        normalizer.normalize({"name": "Hi", "content": "no type, no id"})


def test_one_normalizer_reads_each_key_by_the_context_of_its_own_document(normalizer: Normalizer) -> None:
    # The reader remembers how it read each key under each context: that must never carry over to another.
    aliased = note(texte="<p>aliased</p>")
    del aliased["content"]
    aliased["@context"] = [AS, {"texte": "as:content"}]
    plain = {key: value for key, value in aliased.items() if key != "@context"} | {"@context": AS}
    for _ in range(2):
        assert normalizer.normalize(aliased).document["content"] == "<p>aliased</p>"
        assert "content" not in normalizer.normalize(plain).document
    redefined = note(content="<p>kept</p>")
    redefined["@context"] = [AS, {"content": "http://evil.example/ns#x"}]
    assert "content" not in normalizer.normalize(redefined).document
    assert normalizer.normalize(note(content="<p>kept</p>")).document["content"] == "<p>kept</p>"


def test_a_document_full_of_invented_keys_is_read_and_remembers_a_bounded_number(normalizer: Normalizer) -> None:
    for batch in range(3):
        invented = note(content="<p>hi</p>", **{f"k{batch}-{n}": n for n in range(1000)})
        assert normalizer.normalize(invented).document["content"] == "<p>hi</p>"
    remembered = [len(active.plans) for active in normalizer._contexts.values() if not isinstance(active, str)]
    assert remembered and max(remembered) == MAX_PLANS


# --- attacks -------------------------------------------------------------------------------------------------


def test_a_redefined_content_is_not_read_as_activitystreams_content(normalizer: Normalizer) -> None:
    doc = note(name="Title")
    doc["@context"] = [AS, {"content": "http://evil.example/ns#x", "Note": "http://evil.example/ns#Note"}]
    result = normalizer.normalize(doc)
    assert result.method == "jsonld"
    assert "content" not in result.document
    assert result.document["type"] == "http://evil.example/ns#Note"
    assert result.document["name"] == "Title"


def test_a_redefinition_inside_an_embedded_object_is_honoured(normalizer: Normalizer) -> None:
    inner = note(name="kept")
    inner["@context"] = [AS, {"content": "http://evil.example/ns#x"}]
    doc = {"@context": AS, "id": "https://a.example/a/1", "type": "Announce", "actor": "https://a.example/u/ana"}
    result = normalizer.normalize({**doc, "object": inner})
    assert result.method == "jsonld"
    assert "content" not in result.document["object"] and result.document["object"]["name"] == "kept"


def test_a_redefined_as_prefix_does_not_make_a_post_public(normalizer: Normalizer) -> None:
    doc = note(to="as:Public")
    doc["@context"] = [AS, {"as": "http://evil.example/ns#"}]
    assert normalizer.normalize(doc).document["to"] == ["http://evil.example/ns#Public"]


def test_compact_and_full_iris_are_read_as_their_terms(normalizer: Normalizer) -> None:
    doc = {
        "@context": AS,
        "id": "https://a.example/notes/1",
        "type": "Note",
        "as:content": "<p>hello</p>",
        "https://www.w3.org/ns/activitystreams#name": "Title",
        "as:to": ["as:Public"],
        "as:inReplyTo": {"id": "https://b.example/notes/9"},
    }
    result = normalizer.normalize(doc)
    assert result.method == "jsonld"
    assert result.document == {
        "id": "https://a.example/notes/1",
        "type": "Note",
        "content": "<p>hello</p>",
        "inReplyTo": "https://b.example/notes/9",
        "name": "Title",
        "to": [PUBLIC],
    }


def test_an_unknown_context_is_never_fetched_and_read_plainly_beside_activitystreams(
    normalizer: Normalizer, spy: SpyLoader, network: list[str]
) -> None:
    doc = note(to=[PUBLIC])
    doc["@context"] = [AS, UNKNOWN, {"@language": "und"}]
    result = normalizer.normalize(doc)
    assert result.method == "plain-terms"
    assert result.document["content"] == "<p>hello</p>"
    assert UNKNOWN not in spy.requested
    assert all(spy.bundled.is_bundled(url) for url in spy.requested)
    assert network == []


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        ([UNKNOWN], "without the ActivityStreams context"),
        ([AS, UNKNOWN, {"content": "http://evil.example/ns#x"}], "cannot be read safely"),
        ([AS, {"@import": UNKNOWN, "content": "http://evil.example/ns#x"}], "cannot be read safely"),
        (
            [AS, {"x": {"@id": "http://ex.example/x", "@context": UNKNOWN}, "as:name": "http://evil.example/n"}],
            "cannot be read safely",
        ),
    ],
)
def test_an_unknown_context_that_matters_is_refused_without_any_fetch(
    normalizer: Normalizer, spy: SpyLoader, network: list[str], context: list[Any], reason: str
) -> None:
    doc = note()
    doc["@context"] = context
    with pytest.raises(DocumentError, match=reason):
        normalizer.normalize(doc)
    with pytest.raises(DocumentError, match=r"never fetched|cannot be trusted"):
        normalizer.normalize(doc, use_jsonld=True)
    assert UNKNOWN not in spy.requested
    assert network == []


def test_invalid_json_ld_is_a_document_error(normalizer: Normalizer) -> None:
    doc = note()
    doc["@context"] = [AS, {"@version": 1.1, "content": {"@id": "as:content", "@type": "@json"}}, 7]
    with pytest.raises(DocumentError, match="not valid JSON-LD"):
        normalizer.normalize(doc)


@pytest.mark.parametrize(
    "context",
    [
        "http://www.w3.org/ns/activitystreams#",
        [AS, "https://w3id.org/security/v1", {"toot": "http://joinmastodon.org/ns#", "featured": "toot:featured"}],
        [AS, {"sc": "http://schema.org#", "language": "sc:inLanguage", "@language": "en"}],
    ],
)
def test_the_direct_reading_and_json_ld_agree(normalizer: Normalizer, context: Any) -> None:
    doc = note(
        to=["Public"],
        cc=[],
        inReplyTo={"id": "https://b.example/1", "type": "Note"},
        attachment=[{"type": "Document", "url": "https://a.example/f.png", "mediaType": "image/png"}],
        language={"identifier": "en", "name": "English"},
        sensitive=False,
        featured="https://a.example/u/ana/featured",
        orderedItems=["https://a.example/1", "https://a.example/2"],
        items=[],
        nameMap={"de": "Titel"},
    )
    doc["@context"] = context
    fast = normalizer.normalize(doc)
    assert fast.method == "terms"
    assert normalizer.normalize(doc, use_jsonld=True).document == fast.document


# --- the inbox's glance -------------------------------------------------------------------------------------------


def _claims_after_normalizing(normalizer: Normalizer, document: dict[str, Any]) -> tuple[Any, ...]:
    """What the glance must agree with: the id, type, first actor and first object id of the normalized document."""
    normalized = normalizer.normalize(document).document

    def first(value: Any) -> Any:
        value = value[0] if isinstance(value, list) and value else value
        return value.get("id") if isinstance(value, dict) else value

    return normalized.get("id"), normalized.get("type"), first(normalized.get("actor")), first(normalized.get("object"))


def create(**extra: Any) -> dict[str, Any]:
    return {
        "@context": AS,
        "id": "https://a.example/activities/1",
        "type": "Create",
        "actor": "https://a.example/u/ana",
        "to": [PUBLIC],
        "object": note() | {"@context": None},
        **extra,
    }


def _without_nulls(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not None}


def test_every_sample_activity_glanced_agrees_with_its_normalized_reading(normalizer: Normalizer) -> None:
    glanced = 0
    for path in sorted(SAMPLES.rglob("*.json")):
        document = json.loads(path.read_text())
        if not isinstance(document, dict):
            continue
        found = normalizer.glance(document)
        if found is None:
            continue
        glanced += 1
        claims = (found.id, found.type, found.actor, found.object_id)
        assert claims == _claims_after_normalizing(normalizer, document), path
    # Mastodon's, Friendica's, GNU social's and lotide's activities among them: the usual contexts are glanced.
    assert glanced >= 8


def test_a_plain_create_is_glanced_like_mastodons_with_its_inline_context(normalizer: Normalizer) -> None:
    plain = create()
    plain["object"] = _without_nulls(plain["object"])
    mastodon = plain | {"@context": [AS, {"ostatus": "http://ostatus.org#", "sensitive": "as:sensitive"}]}
    for document in (plain, mastodon):
        found = normalizer.glance(document)
        assert found is not None
        assert (found.id, found.type, found.actor, found.object_id) == (
            "https://a.example/activities/1", "Create", "https://a.example/u/ana", "https://a.example/notes/1",
        )  # fmt: skip
        assert _claims_after_normalizing(normalizer, document) == (
            found.id, found.type, found.actor, found.object_id,
        )  # fmt: skip
    by_reference = normalizer.glance(create(object="https://a.example/notes/1", type="Update"))
    assert by_reference is not None and by_reference.object_id == "https://a.example/notes/1"
    assert by_reference.type == "Update"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"@context": [AS, {"actor": "https://evil.example/ns#sender"}]}, "a context redefines actor"),
        ({"@context": [AS, {"actor": None}]}, "a context removes actor"),
        ({"@context": [AS, {"author": "as:actor"}], "author": "https://b.example/u/bo"}, "an alias of actor"),
        ({"as:actor": "https://b.example/u/bo"}, "actor named by a compact IRI as well"),
        ({AS + "#actor": "https://b.example/u/bo"}, "actor named by its full IRI as well"),
        ({"@id": "https://b.example/activities/2"}, "the @id keyword beside id"),
        ({"@context": [AS, {"ident": "@id"}], "ident": "https://b.example/x"}, "an alias of @id"),
        ({"@context": [AS, {"id": "https://evil.example/ns#id"}]}, "id made an ordinary property"),
        ({"@context": [AS, UNKNOWN]}, "a context that is not bundled"),
        ({"@context": None}, "no context"),
        ({"actor": ["https://a.example/u/ana", "https://b.example/u/bo"]}, "several actors"),
        ({"actor": {"id": "https://a.example/u/ana", "type": "Person"}}, "an embedded actor"),
        ({"type": ["Create", "Announce"]}, "several types"),
        ({"object": ["https://a.example/notes/1"]}, "a list of objects"),
        ({"object": note()}, "an object with its own context"),
        ({"object": {"@id": "https://b.example/notes/2", "type": "Note"}}, "an object named by @id"),
        ({"object": {"id": 7, "type": "Note"}}, "an object whose id is not a string"),
        ({"@graph": []}, "a JSON-LD keyword the direct reading does not follow"),
    ],
)
def test_what_the_glance_cannot_be_sure_of_is_left_to_normalizing(
    normalizer: Normalizer, change: dict[str, Any], why: str
) -> None:
    document = _without_nulls(create(**change))
    if isinstance(document["object"], dict):
        document["object"] = _without_nulls(document["object"])
    assert normalizer.glance(document) is None, why


def test_an_embedded_object_without_an_id_is_glanced_as_having_none(normalizer: Normalizer) -> None:
    document = create(object={"type": "Note", "content": "hi"})
    found = normalizer.glance(document)
    assert found is not None and found.object_id is None
    assert _claims_after_normalizing(normalizer, document)[3] is None

"""JSON-LD at the edge: parse an incoming body safely, normalize an ActivityStreams document into the one
internal shape the rest of Jardin reads. (Mastodon-style `RsaSignature2017` Linked Data signatures, which
need the same offline contexts, are `ld_signatures`'.)

The internal shape: keys are the compact terms of `vocabulary.TERMS` (plus `id`, `type`, `contentMap`,
`nameMap`, `summaryMap`, `orderedItems`), nothing else; `@context` is gone; `to`, `cc`, `bto`, `bcc`,
`audience`, `tag`, `attachment`, `url`, `icon`, `image`, `items`, `orderedItems`… are always lists; other terms
hold one value (or a list when the sender gave several); embedded objects are normalized the same way, and an
embedded object that says nothing but its id becomes that id; the public collection is always spelled in full.

How a document is read (`Normalized.method`):
- "terms": every context is bundled and says what Jardin expects of the terms it reads, so the keys are read
  directly, without running JSON-LD (pyld costs milliseconds per document).
- "jsonld": a context redefines a term Jardin reads, or the document names properties by compact or full IRIs,
  or uses JSON-LD features the direct reading does not follow: pyld expands it (offline, bundled contexts only)
  and the expanded form is read by IRI. Both readings give the same shape for the same meaning.
- "plain-terms": a context is not bundled (e.g. Pleroma's per-instance `litepub-0.1.jsonld`). It is never
  fetched; the document is read by its plain terms when it also uses the ActivityStreams context, and refused
  when it does not, or when what it says beyond the unknown context would need JSON-LD to read.
- "no-context": no `@context` at all (Lemmy's test payloads, some embedded objects): read by its plain terms if
  it has an `id` and a `type`, refused otherwise.
A default `@language` of an inline context is ignored: languages are read from `contentMap` keys and `language`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Literal, cast

from pyld import jsonld as pyld_jsonld
from pyld.context_resolver import ContextResolver

from activitypub.protocol.contexts import (
    ActiveContext,
    BundledContexts,
    ContextNotBundled,
    NeedsJsonLd,
    OfflineLoader,
    TermDef,
    apply_context,
    is_activitystreams,
)
from activitypub.protocol.vocabulary import (
    ADDRESSING,
    AS_NAMESPACE,
    LANGUAGE_MAPS,
    ORDERED_ITEMS,
    PUBLIC,
    PUBLIC_ALIASES,
    TERMS,
    TYPE_IRIS,
    Term,
    canonical_iri,
)

Method = Literal["terms", "jsonld", "plain-terms", "no-context"]
DocumentLoader = Callable[[str, Mapping[str, Any]], dict[str, Any]]

# A JSON string, or an escape outside one. Possessive, and escapes consumed everywhere, so that an unterminated
# string is scanned once, not once per quote (the naive pattern takes seconds on 40 kB of `\"`).
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|\\.', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_BY_IRI: dict[str, Term] = {canonical_iri(term.iri): term for term in TERMS}
_TYPE_NAMES: dict[str, str] = {canonical_iri(iri): name for name, iri in TYPE_IRIS.items()}
_CONTENT_IRIS = {canonical_iri(_BY_IRI[AS_NAMESPACE + name].iri): name for name in LANGUAGE_MAPS}
_ITEMS_IRI = AS_NAMESPACE + "items"


class DocumentError(ValueError):
    """An incoming document Jardin will not read; the message says why, in plain English."""


@dataclass(frozen=True)
class Normalized:
    """A document in the internal shape, and how it was read."""

    document: dict[str, Any]
    method: Method


@dataclass(frozen=True)
class Glance:
    """What an inbox checks before it answers: an activity's id, type, first actor and first object's id (None
    when it has no object, or an embedded one without an id), as the normalized document would give them."""

    id: str
    type: str
    actor: str
    object_id: str | None


def parse_json(body: bytes | str, *, max_depth: int = 64) -> dict[str, Any]:
    """The JSON object in `body`, or `DocumentError`: not UTF-8, not JSON, not an object, nested deeper than
    `max_depth` (measured before decoding, so even a 100,000-deep body costs one linear scan)."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise DocumentError("the body is not UTF-8 text") from None
    else:
        text = body
    # No deeper than it has brackets: most activities have fewer than the bound, and are not scanned.
    if text.count("{") + text.count("[") > max_depth and _text_depth(text) > max_depth:
        raise DocumentError(f"the JSON nests deeper than {max_depth} levels")
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as error:
        raise DocumentError(f"the body is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise DocumentError(f"the JSON is {type(value).__name__ if value is not None else 'null'}, not an object")
    return value


def internal_context() -> dict[str, Any]:
    """The JSON-LD context that defines every term of the internal shape with its standard IRI. It comes first
    when pyld reads a document, so a term the sender's contexts leave undefined keeps its usual meaning (as
    Mastodon and Lemmy read it) while any redefinition by the sender takes precedence."""
    context: dict[str, Any] = {"id": "@id", "type": "@type"}
    for term in TERMS:
        context[term.name] = {"@id": term.iri, "@type": "@id"} if term.reference else term.iri
    for plain, mapped in LANGUAGE_MAPS.items():
        context[mapped] = {"@id": AS_NAMESPACE + plain, "@container": "@language"}
    context[ORDERED_ITEMS] = {"@id": _ITEMS_IRI, "@type": "@id", "@container": "@list"}
    context.update(TYPE_IRIS)
    return context


class Normalizer:
    """Reads incoming documents into the internal shape. Build one in the app's lifespan and share it: it reads
    the bundled contexts on first use and keeps pyld's processed contexts in its own cache."""

    def __init__(self, *, loader: DocumentLoader | None = None, max_depth: int = 64) -> None:
        self.bundled = loader.bundled if isinstance(loader, OfflineLoader) else BundledContexts()
        self.loader: DocumentLoader = loader if loader is not None else OfflineLoader(self.bundled)
        self.max_depth = max_depth
        self._context = internal_context()
        self._base = apply_context(ActiveContext({}), self._context, self.bundled)
        # The terms Jardin reads, with the IRI each must keep for the direct reading to be right.
        self._watched = {"as": AS_NAMESPACE} | {
            name: canonical_iri(definition.iri)
            for name, definition in self._base.terms.items()
            if definition.iri is not None and not definition.iri.startswith("@")
        }
        self._resolver_cache = BoundedCache(256)
        self._contexts = BoundedCache(256)  # active contexts the direct reading reached, by the way it came

    def normalize(self, document: Mapping[str, Any], *, use_jsonld: bool = False) -> Normalized:
        """`document` in the internal shape, or `DocumentError`. `use_jsonld=True` forces the pyld reading (to
        cross-check the direct one); it refuses documents whose contexts are not all bundled."""
        urls = _scan(document, self.max_depth)
        unknown = [url for url in urls if not self.bundled.is_bundled(url)]
        context = document.get("@context")
        top = [context] if not isinstance(context, list) else context
        if unknown and not any(isinstance(url, str) and is_activitystreams(url) for url in top):
            raise DocumentError(
                f"the document uses the context {unknown[0]!r}, which Jardin does not know, without the "
                "ActivityStreams context: its terms cannot be trusted"
            )
        if "@context" not in document and not (isinstance(document.get("id"), str) and document.get("type")):
            raise DocumentError("the document has no @context and no id and type: it is not ActivityStreams")
        if use_jsonld:
            if unknown:
                raise DocumentError(f"the context {unknown[0]!r} is not bundled; it is never fetched")
            return Normalized(self._by_jsonld(document), "jsonld")
        method: Method = "plain-terms" if unknown else "terms" if "@context" in document else "no-context"
        try:
            reader = _Reader(self._watched, self.bundled, self._contexts)
            return Normalized(reader.node(document, self._base), method)
        except NeedsJsonLd as reason:
            if unknown:
                raise DocumentError(
                    f"the document uses the context {unknown[0]!r}, which Jardin does not know, and {reason}: "
                    "it cannot be read safely"
                ) from None
        return Normalized(self._by_jsonld(document), "jsonld")

    def glance(self, document: Mapping[str, Any]) -> Glance | None:
        """The `Glance` of an activity, read from its plain terms without normalizing it, or None when that
        reading might not be the normalized one (then normalize it).

        The reading is certain when every context is a bundled URL that keeps the terms Jardin reads (checked,
        and remembered, as `normalize` does), the activity and its embedded object (without its own context)
        name each of `@id`, `@type`, `actor` and `object` only by those plain terms, with string values, and
        no key of either needs JSON-LD: then `normalize` reads the same values through the same context.
        What the glance does not look at (the content, the addressing…) is only read when the document is
        normalized, which may still refuse it."""
        context = document.get("@context")
        urls = [context] if isinstance(context, str) else context
        if not isinstance(urls, list) or not urls:
            return None
        # Inline contexts are applied as `normalize` applies them; a URL must be bundled (none is ever fetched).
        if not all(isinstance(url, dict) or (isinstance(url, str) and self.bundled.is_bundled(url)) for url in urls):
            return None
        reader = _Reader(self._watched, self.bundled, self._contexts)
        try:
            active = reader._with_context(self._base, context)
        except (NeedsJsonLd, ContextNotBundled, DocumentError):
            return None
        named = _plainly_named(document, active)
        if named is None or not {"id", "type", "actor"} <= named or ("object" in document) != ("object" in named):
            return None
        activity_id, kind, actor = document["id"], document["type"], document["actor"]
        if not isinstance(activity_id, str) or not isinstance(kind, str) or not isinstance(actor, str):
            return None
        definition = active.terms.get(kind)
        if definition is not None and definition.scoped:
            return None
        value = document.get("object")
        object_id: str | None = None
        if isinstance(value, str):
            object_id = reader._value(value, _is_reference(active, "object"), active)
        elif isinstance(value, dict):
            embedded_id = value.get("id")
            embedded = None if "@context" in value else _plainly_named(value, active)
            if embedded is None or ("id" in value) != ("id" in embedded):
                return None
            types = value.get("type")
            for name in types if isinstance(types, list) else [types]:
                if not isinstance(name, str) or getattr(active.terms.get(name), "scoped", False):
                    return None
            if embedded_id is not None:
                if not isinstance(embedded_id, str):
                    return None
                object_id = reader._reference(embedded_id, active)
        elif value is not None:
            return None
        return Glance(
            reader._reference(activity_id, active),
            _type_name(active.expand(kind)),
            reader._value(actor, _is_reference(active, "actor"), active),
            object_id,
        )

    def _by_jsonld(self, document: Mapping[str, Any]) -> dict[str, Any]:
        prepared = _without_default_language(document)
        contexts = prepared.get("@context", [])
        prepared["@context"] = [self._context, *(contexts if isinstance(contexts, list) else [contexts])]
        try:
            expanded = pyld_jsonld.expand(prepared, self._pyld_options())
        except Exception as error:  # untrusted input: any failure of pyld is a refusal, explained
            raise DocumentError(jsonld_reason(error)) from None
        if len(expanded) != 1 or not isinstance(expanded[0], dict):
            raise DocumentError(f"the document describes {len(expanded)} nodes instead of one")
        return _from_expanded(expanded[0])

    def _pyld_options(self) -> dict[str, Any]:
        return {
            "documentLoader": self.loader,
            "base": None,
            "contextResolver": ContextResolver(self._resolver_cache, self.loader),
        }


class _Reader:
    """The direct reading: keys are resolved through the active context (bundled contexts read cheaply, inline
    ones too) and read by IRI, exactly as the expanded form would be read; anything it cannot follow raises
    `NeedsJsonLd`."""

    def __init__(self, watched: Mapping[str, str], bundled: BundledContexts, cache: dict[str, Any]) -> None:
        self.watched = watched
        self.bundled = bundled
        self.cache = cache

    def node(self, node: Mapping[str, Any], active: ActiveContext) -> dict[str, Any]:
        if "@context" in node:
            active = self._with_context(active, node["@context"])
        out: dict[str, Any] = {}
        collected: dict[str, list[tuple[TermDef, Any]]] = {}
        plans = active.plans
        for key in sorted(node):
            value = node[key]
            if value is None:
                continue
            plan = plans.get(key) or _new_plan(key, active)
            kind = plan[0]
            if kind is _COLLECT:
                collected.setdefault(plan[1], []).append((plan[2], value))
            elif kind is _KEYWORD:
                self._keyword(out, plan[1], value, active)
            elif kind is _NEEDS_JSONLD:
                raise NeedsJsonLd(plan[1])
        for iri, entries in collected.items():
            self._emit(out, iri, entries, active)
        return out

    def _with_context(self, active: ActiveContext, value: Any) -> ActiveContext:
        """The context after `value`, checked to keep every term Jardin reads; senders repeat their contexts, so
        the outcome is remembered."""
        # A context is most often one URL: no need to serialize it (the tag keeps a URL and a list apart).
        key = active.key + ("\nu" + value if isinstance(value, str) else "\nj" + json.dumps(value, sort_keys=True))
        known = self.cache.get(key)
        if known is None:
            try:
                applied = apply_context(active, value, self.bundled)
                for name, iri in self.watched.items():
                    definition = applied.terms.get(name)
                    if definition is not None and definition.iri is not None and canonical_iri(definition.iri) != iri:
                        raise NeedsJsonLd(f"a context redefines {name!r}")
                known = ActiveContext(applied.terms, applied.vocab, key)
            except NeedsJsonLd as reason:
                known = str(reason)
            self.cache[key] = known
        if isinstance(known, str):
            raise NeedsJsonLd(known)
        return cast(ActiveContext, known)

    def _keyword(self, out: dict[str, Any], keyword: str, value: Any, active: ActiveContext) -> None:
        name = "id" if keyword == "@id" else "type"
        if name in out:
            raise NeedsJsonLd(f"the document gives {keyword} twice")
        if name == "id":
            if not isinstance(value, str):
                raise DocumentError("the id is not a string")
            out["id"] = self._reference(value, active)
            return
        names = value if isinstance(value, list) else [value]
        if not all(isinstance(name, str) for name in names):
            raise DocumentError("the type is not a string or a list of strings")
        for name in names:
            definition = active.terms.get(name)
            if definition is not None and definition.scoped:
                raise NeedsJsonLd(f"the type {name!r} brings its own context")
        types = [_type_name(active.expand(name)) for name in names]
        if types:
            out["type"] = types[0] if len(types) == 1 else types

    def _reference(self, value: str, active: ActiveContext) -> str:
        return active.expand(value, vocab=False)

    def _emit(
        self,
        out: dict[str, Any],
        iri: str,
        entries: list[tuple[TermDef, Any]],
        active: ActiveContext,
    ) -> None:
        term = _BY_IRI[iri]
        if len(entries) == 1 and entries[0][0].container in (None, "@set") and iri not in _ORDERED_OR_LISTS:
            # The usual case, one key with plain values: what `_Values` would store, without building one.
            definition, value = entries[0]
            reference = definition.type == "@id"
            if isinstance(value, list):
                plain = [self._value(item, reference, active) for item in value if item is not None]
            else:
                plain = [self._value(value, reference, active)]
            _store_plain(out, term, plain)
            return
        values = _Values()
        for definition, value in entries:
            if definition.container == "@language":
                if iri not in _CONTENT_IRIS or not isinstance(value, dict):
                    raise NeedsJsonLd(f"a language map for {term.name!r}")
                for language, text in value.items():
                    texts = [t for t in (text if isinstance(text, list) else [text]) if t is not None]
                    if language.startswith("@") or not all(isinstance(t, str) for t in texts):
                        raise NeedsJsonLd(f"an unusual language map for {term.name!r}")
                    values.languages.setdefault(language.lower(), []).extend(texts)
                continue
            if definition.container not in (None, "@set", "@list"):
                raise NeedsJsonLd(f"the container {definition.container} of {term.name!r}")
            reference = definition.type == "@id"
            read = [self._value(item, reference, active) for item in _items(value)]
            if definition.container == "@list" and iri == _ITEMS_IRI:
                values.add_ordered(read)
            else:
                values.add_plain(read)
        values.store(out, term)

    def _value(self, value: Any, reference: bool, active: ActiveContext) -> Any:
        if isinstance(value, str):
            # An absolute http(s) URL expands to itself: most references are, and need no look at the context.
            if not reference or value.startswith(("https://", "http://")):
                return value
            return active.expand(value, vocab=False)
        if isinstance(value, dict):
            if any(key[:1] == "@" and key not in ("@id", "@type", "@context") for key in value):
                raise NeedsJsonLd("a JSON-LD value or list object")
            return _collapse_node(self.node(value, active))
        if isinstance(value, list):
            raise NeedsJsonLd("a list of lists")
        return value


# How `_Reader.node` reads a key under an active context, decided once per context and key.
_COLLECT, _KEYWORD, _NEEDS_JSONLD, _SKIP = "collect", "keyword", "needs-jsonld", "skip"
MAX_PLANS = 1024  # keys remembered per active context: a peer inventing keys cannot grow it without bound
# IRIs whose values `_Values` sorts out specially (an ordered list, language maps): never the fast path.
_ORDERED_OR_LISTS = frozenset({_ITEMS_IRI, *_CONTENT_IRIS})


def _new_plan(key: str, active: ActiveContext) -> tuple[Any, ...]:
    """The plan of a key not planned yet under `active`, remembered there (up to MAX_PLANS keys)."""
    plan = _plan(key, active)
    if len(active.plans) < MAX_PLANS:
        active.plans[key] = plan
    return plan


def _plan(key: str, active: ActiveContext) -> tuple[Any, ...]:
    if key == "@context":
        return (_SKIP,)
    definition = active.terms.get(key)
    keyword = key if key.startswith("@") else definition.iri if definition is not None else None
    if keyword in ("@id", "@type"):
        return (_KEYWORD, keyword)
    if key.startswith("@"):
        return (_NEEDS_JSONLD, f"the document uses {key}")
    if definition is None:
        if ":" in key and canonical_iri(active.expand(key)) in _BY_IRI:
            return (_NEEDS_JSONLD, f"the document names a property by the IRI {key!r}")
        return (_SKIP,)
    iri = canonical_iri(definition.iri) if definition.iri is not None else None
    if iri is None or iri not in _BY_IRI:
        return (_SKIP,)
    if definition.scoped or definition.tagged or definition.type in ("@json", "@vocab", "@none"):
        return (_NEEDS_JSONLD, f"the context gives {key!r} a definition the direct reading does not follow")
    return (_COLLECT, iri, definition)


# The keys a glance reads, each of which must be the only key of a node that means what it means.
_GLANCED = {"@id": "id", "@type": "type", AS_NAMESPACE + "actor": "actor", AS_NAMESPACE + "object": "object"}


def _plainly_named(node: Mapping[str, Any], active: ActiveContext) -> set[str] | None:
    """The keys of `id`, `type`, `actor` and `object` that `node` has, each read with its usual meaning; None
    when the node names one of them otherwise too (an alias, a compact or full IRI) or has a key that the direct
    reading could not follow."""
    plans = active.plans
    named: set[str] = set()
    for key in node:
        plan = plans.get(key) or _new_plan(key, active)
        kind = plan[0]
        if kind is _NEEDS_JSONLD:
            return None
        if kind is _KEYWORD or kind is _COLLECT:
            expected = _GLANCED.get(plan[1])
            if expected is None:
                continue
            if key != expected or (kind is _COLLECT and plan[2].container not in (None, "@set")):
                return None
            named.add(key)
    return named


def _is_reference(active: ActiveContext, term: str) -> bool:
    definition = active.terms.get(term)
    return definition is not None and definition.type == "@id"


def _store_plain(out: dict[str, Any], term: Term, plain: list[Any]) -> None:
    """`_Values.store` for plain values only."""
    if not plain and not term.always_list:
        return
    name = term.name
    if name in ADDRESSING:
        plain = [PUBLIC if isinstance(item, str) and item in PUBLIC_ALIASES else item for item in plain]
    out[name] = plain if term.always_list else plain[0] if len(plain) == 1 else plain


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [item for item in value if item is not None]
    return [value]


@dataclass
class _Values:
    """The values read for one IRI, sorted out for the shape: plain ones, an ordered list (`orderedItems`),
    language-tagged texts (`contentMap`…). None: not given at all."""

    plain: list[Any] | None = None
    ordered: list[Any] | None = None
    languages: dict[str, list[Any]] = field(default_factory=dict)

    def add_plain(self, values: list[Any]) -> None:
        self.plain = [*(self.plain or []), *values]

    def add_ordered(self, values: list[Any]) -> None:
        self.ordered = [*(self.ordered or []), *values]

    def store(self, out: dict[str, Any], term: Term) -> None:
        """Puts the values under their terms, with the list-or-single rule of the shape."""
        name = term.name
        if self.ordered is not None:
            out[ORDERED_ITEMS] = self.ordered
        plain = self.plain
        # An empty list given beside values under another term of the same IRI adds nothing (as in JSON-LD).
        if plain is not None and (plain or (term.always_list and self.ordered is None and not self.languages)):
            if name in ADDRESSING:
                plain = [PUBLIC if isinstance(item, str) and item in PUBLIC_ALIASES else item for item in plain]
            out[name] = plain if term.always_list else plain[0] if len(plain) == 1 else plain
        if self.languages:
            out[LANGUAGE_MAPS[name]] = {
                language: texts[0] if len(texts) == 1 else texts for language, texts in self.languages.items()
            }


def _collapse_node(node: dict[str, Any]) -> Any:
    """An embedded object that says nothing but its id is that id (as a JSON-LD node reference is)."""
    return node["id"] if node.keys() == {"id"} else node


def _type_name(iri: str) -> str:
    canonical = canonical_iri(iri)
    if canonical in _TYPE_NAMES:
        return _TYPE_NAMES[canonical]
    return iri[2:] if iri.startswith("_:") else iri


def _from_expanded(node: Mapping[str, Any]) -> dict[str, Any]:
    """Reads one node of pyld's expanded form into the internal shape, by IRI."""
    out: dict[str, Any] = {}
    if "@id" in node:
        out["id"] = node["@id"]
    types = [_type_name(name) for name in node.get("@type", [])]
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    collected: dict[str, list[Any]] = {}
    for key, values in node.items():
        if not key.startswith("@") and (iri := canonical_iri(key)) in _BY_IRI:
            collected.setdefault(iri, []).extend(values)
    for iri, given in collected.items():
        values = _Values(plain=[] if not given else None)
        for value in given:
            if "@list" in value and iri == _ITEMS_IRI:
                values.add_ordered([_expanded_value(item) for item in value["@list"]])
            elif "@language" in value and iri in _CONTENT_IRIS:
                values.languages.setdefault(value["@language"], []).append(value["@value"])
            else:
                values.add_plain(_expanded_values(value))
        values.store(out, _BY_IRI[iri])
    return out


def _expanded_values(value: Mapping[str, Any]) -> list[Any]:
    """One value of the expanded form; lists (and the named graphs of `proof`) give their members."""
    if "@list" in value:
        return [_expanded_value(item) for item in value["@list"]]
    if "@graph" in value:
        return [_expanded_value(item) for item in value["@graph"]]
    return [_expanded_value(value)]


def _expanded_value(value: Mapping[str, Any]) -> Any:
    if "@value" in value:
        return value["@value"]
    if "@list" in value:
        return [_expanded_value(item) for item in value["@list"]]
    return _collapse_node(_from_expanded(value))


def _scan(document: Mapping[str, Any], max_depth: int) -> list[str]:
    """Every context URL the document refers to, at any level (scoped contexts and `@import` included), after
    checking, without recursion, that it nests no deeper than `max_depth`."""
    urls: list[str] = []
    # Each entry: a container, its depth, and whether it is data, a `@context` value, or an inline context
    # object. Scalars are never pushed: most of a document is strings, and they need no look.
    stack: list[tuple[Any, int, str]] = [(document, 1, "data")]
    while stack:
        value, depth, kind = stack.pop()
        if depth > max_depth:
            raise DocumentError(f"the document nests deeper than {max_depth} levels")
        if kind == "context":
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    urls.append(item)
                else:
                    stack.append((item, depth + 1, "context-object"))
        elif isinstance(value, dict):
            inner = depth + 1
            for key, item in value.items():
                if key == "@context" or (kind == "context-object" and key == "@import"):
                    stack.append((item, inner, "context"))
                elif kind == "context-object" and isinstance(item, dict):
                    stack.append((item, inner, "context-object"))  # a term definition, maybe scoped
                elif isinstance(item, (dict, list)):
                    stack.append((item, inner, "data"))
        elif isinstance(value, list):
            inner = depth + 1
            stack.extend((item, inner, "data") for item in value if isinstance(item, (dict, list)))
    return urls


def _without_default_language(value: Any) -> Any:
    """A copy of the document in which no inline context sets a default `@language` (see the module docstring)."""
    if isinstance(value, list):
        return [_without_default_language(item) for item in value]
    if not isinstance(value, dict):
        return value
    copied = {key: _without_default_language(item) for key, item in value.items() if key != "@language"}
    if "@language" in value and "@value" in value:
        copied["@language"] = value["@language"]
    return copied


def jsonld_reason(error: Exception) -> str:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ContextNotBundled):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    message = str(error.args[0]) if error.args else type(error).__name__
    return f"the document is not valid JSON-LD: {message.splitlines()[0]}"


def _text_depth(text: str) -> int:
    brackets = _BRACKETS.findall(_STRING.sub("", text))
    return max(accumulate(_DEPTH_STEP[b] for b in brackets), default=0)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # 1e400 reads as infinity, which no JSON can say again: PostgreSQL would refuse the document when it is
    # stored, and with it every activity committed in the same batch.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


# One decoder for every body (json.loads with a hook builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


class BoundedCache(dict[str, Any]):
    """The cache pyld's context resolver fills with processed contexts, kept per normalizer and bounded."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self and len(self) >= self.size:
            del self[next(iter(self))]
        super().__setitem__(key, value)

"""The JSON-LD contexts Jardin ships (the `.jsonld` files beside this module), the offline document loader that
serves them to pyld, and a cheap reading of the terms a context defines, which lets the normalizer read most
documents by their terms without running JSON-LD at all.

A context URL that is not bundled is never fetched: the loader raises `ContextNotBundled`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from activitypub.protocol.vocabulary import AS_CONTEXT, canonical_iri

_IGNORED_KEYWORDS = frozenset({"@version", "@language", "@direction"})
_GEN_DELIMS = (":", "/", "?", "#", "[", "]", "@")


class ContextNotBundled(LookupError):
    """A document refers to a context URL Jardin does not ship; it is never fetched."""

    def __init__(self, url: str) -> None:
        super().__init__(f"the JSON-LD context {url!r} is not bundled with Jardin and is never fetched")
        self.url = url


class NeedsJsonLd(Exception):
    """The context uses a JSON-LD feature the cheap reading does not follow; full processing is needed."""


def url_key(url: str) -> str:
    """The form under which context URLs are matched: scheme, case of the host and trailing `#` or `/` ignored,
    because the fediverse spells the same context `http://joinmastodon.org/ns` or `https://…/activitystreams#`."""
    rest = url.strip()
    for scheme in ("https://", "http://"):
        if rest.lower().startswith(scheme):
            rest = rest[len(scheme) :]
            break
    host, slash, path = rest.partition("/")
    return (host.lower() + slash + path).rstrip("#/")


@dataclass(frozen=True)
class TermDef:
    """What one term means in an active context, as far as the normalizer needs to know."""

    iri: str | None  # None: the term is explicitly undefined (its values are dropped)
    container: str | None = None
    type: str | None = None
    protected: bool = False
    scoped: bool = False  # carries its own `@context`
    tagged: bool = False  # carries `@language` or `@direction`
    prefix: bool = False  # usable as the prefix of compact IRIs (a plain string ending with a delimiter)


@dataclass(frozen=True)
class ActiveContext:
    """The terms in force at one point of a document (as far as the cheap reading follows them)."""

    terms: Mapping[str, TermDef]
    vocab: str | None = None
    key: str = ""  # how this context was reached (the `@context` values applied), for caching
    # What the normalizer decided for each key read under this context (documents repeat the same keys).
    plans: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def expand(self, value: str, *, vocab: bool = True) -> str:
        """`value` as JSON-LD expands it: a key or type (`vocab`: terms and `@vocab` apply) or a reference (only
        compact IRIs expand; a relative IRI stays relative, as no base is used)."""
        definition = self.terms.get(value) if vocab else None
        if definition is not None and definition.iri is not None:
            return definition.iri
        prefix, colon, suffix = value.partition(":")
        if colon and prefix != "_" and not suffix.startswith("//"):
            prefix_def = self.terms.get(prefix)
            if prefix_def is not None and prefix_def.iri is not None and prefix_def.prefix:
                return prefix_def.iri + suffix
            return value
        if vocab and not colon and self.vocab is not None:
            return self.vocab + value
        return value


class BundledContexts:
    """The context documents shipped as data files; read on first use, never at import."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[str, str]] | None = None
        self._documents: dict[str, Any] = {}
        self._terms: dict[str, ActiveContext] = {}

    def is_bundled(self, url: str) -> bool:
        return url_key(url) in self._index()

    def canonical_url(self, url: str) -> str:
        """The URL under which the context is bundled (its usual spelling)."""
        try:
            return self._index()[url_key(url)][0]
        except KeyError:
            raise ContextNotBundled(url) from None

    def document(self, url: str) -> Any:
        """A fresh copy of the context document (pyld resolves URLs inside it in place)."""
        key = url_key(url)
        if key not in self._documents:
            try:
                _, filename = self._index()[key]
            except KeyError:
                raise ContextNotBundled(url) from None
            self._documents[key] = json.loads(resources.files(__name__).joinpath(filename).read_text("utf-8"))
        return copy.deepcopy(self._documents[key])

    def terms(self, url: str) -> ActiveContext:
        """The term definitions the bundled context makes, read once."""
        key = url_key(url)
        if key not in self._terms:
            document = self.document(url)
            self._terms[key] = apply_context(ActiveContext({}), document.get("@context"), self)
        return self._terms[key]

    def _index(self) -> dict[str, tuple[str, str]]:
        if self._files is None:
            index = json.loads(resources.files(__name__).joinpath("index.json").read_text("utf-8"))
            self._files = {url_key(url): (url, filename) for url, filename in index.items()}
        return self._files


class OfflineLoader:
    """A pyld document loader over the bundled contexts. Pass it per call (`{"documentLoader": loader}`);
    pyld's `set_document_loader` is global state and is never used."""

    def __init__(self, bundled: BundledContexts | None = None) -> None:
        self.bundled = bundled if bundled is not None else BundledContexts()

    def __call__(self, url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "contentType": "application/ld+json",
            "contextUrl": None,
            "documentUrl": self.bundled.canonical_url(url),
            "document": self.bundled.document(url),
            # Lets pyld keep the processed context in the resolver cache the normalizer owns.
            "tag": "static",
        }


def is_activitystreams(url: str) -> bool:
    return url_key(url) == url_key(AS_CONTEXT)


def apply_context(active: ActiveContext, value: Any, bundled: BundledContexts) -> ActiveContext:
    """The active context after `value` (a `@context` value: URL, object, or a list of them) is applied.
    URLs that are not bundled are skipped (the caller decides whether that is acceptable); `NeedsJsonLd` is
    raised for anything the cheap reading cannot follow."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            if bundled.is_bundled(item):
                delta = bundled.terms(item)
                active = _merge(active, delta.terms, delta.vocab)
        elif isinstance(item, dict):
            active = _apply_object(active, item)
        else:
            raise NeedsJsonLd("a null or malformed @context entry")
    return active


def _merge(active: ActiveContext, terms: Mapping[str, TermDef], vocab: str | None) -> ActiveContext:
    merged = dict(active.terms)
    for term, definition in terms.items():
        _check_protected(merged, term, definition)
        merged[term] = definition
    return ActiveContext(merged, vocab if vocab is not None else active.vocab)


def _check_protected(terms: Mapping[str, TermDef], term: str, definition: TermDef) -> None:
    previous = terms.get(term)
    if previous is not None and previous.protected and _meaning(previous) != _meaning(definition):
        raise NeedsJsonLd(f"the context redefines the protected term {term!r}")


def _meaning(definition: TermDef) -> tuple[object, ...]:
    return (definition.iri, definition.container, definition.type, definition.scoped, definition.tagged)


def _apply_object(active: ActiveContext, ctx: dict[str, Any]) -> ActiveContext:
    for keyword in ctx:
        if keyword.startswith("@") and keyword not in _IGNORED_KEYWORDS | {"@vocab", "@protected"}:
            raise NeedsJsonLd(f"the context uses {keyword}")
    vocab = ctx.get("@vocab", active.vocab)
    if vocab is not None and not isinstance(vocab, str):
        raise NeedsJsonLd("the context has a non-string @vocab")
    builder = _ObjectReader(ctx, dict(active.terms), vocab)
    for term in ctx:
        if not term.startswith("@"):
            builder.define(term)
    return ActiveContext(builder.terms, vocab)


class _ObjectReader:
    """Reads the term definitions of one context object, in dependency order (a prefix may be defined after
    the terms that use it)."""

    def __init__(self, ctx: dict[str, Any], terms: dict[str, TermDef], vocab: str | None) -> None:
        self.ctx = ctx
        self.terms = terms
        self.vocab = vocab
        self.protect_all = ctx.get("@protected") is True
        self.state: dict[str, bool] = {}

    def define(self, term: str) -> None:
        if self.state.get(term):
            return
        if term in self.state:
            raise NeedsJsonLd(f"the context defines {term!r} in a cycle")
        self.state[term] = False
        if ":" in term or "/" in term:
            raise NeedsJsonLd(f"the context defines the IRI-like term {term!r}")
        definition = self._definition(term, self.ctx[term])
        keyword = definition.iri if definition.iri is not None and definition.iri.startswith("@") else None
        if keyword is not None and (term, keyword) not in {("id", "@id"), ("type", "@type")}:
            raise NeedsJsonLd(f"the context makes {term!r} an alias of {keyword}")
        _check_protected(self.terms, term, definition)
        self.terms[term] = definition
        self.state[term] = True

    def _definition(self, term: str, value: Any) -> TermDef:
        if value is None:
            return TermDef(None)
        if isinstance(value, str):
            iri = self._expand(value, term)
            prefix = iri.startswith("_:") or iri.endswith(_GEN_DELIMS)
            return TermDef(iri, protected=self.protect_all, prefix=prefix)
        if not isinstance(value, dict):
            raise NeedsJsonLd(f"the context defines {term!r} with a {type(value).__name__}")
        if {"@reverse", "@nest", "@index", "@prefix"} & value.keys():
            raise NeedsJsonLd(f"the context defines {term!r} with a keyword the cheap reading does not follow")
        raw_id = value.get("@id", term)
        container = value.get("@container")
        if isinstance(container, list):
            container = next((c for c in container if c != "@set"), "@set" if container else None)
        kind = value.get("@type")
        return TermDef(
            None if raw_id is None else self._expand(str(raw_id), term),
            container if isinstance(container, str) else None,
            self._expand(kind, term) if isinstance(kind, str) else None,
            value.get("@protected", self.protect_all) is True,
            scoped="@context" in value,
            tagged="@language" in value or "@direction" in value,
        )

    def _expand(self, value: str, term: str) -> str:
        if value.startswith("@"):
            return value
        prefix, colon, suffix = value.partition(":")
        if colon:
            if prefix == "_" or suffix.startswith("//"):
                return value
            if prefix in self.ctx and prefix != term:
                self.define(prefix)
            prefix_def = self.terms.get(prefix)
            if prefix_def is not None and prefix_def.iri is not None and prefix_def.prefix:
                return prefix_def.iri + suffix
            return value
        if value != term:
            if value in self.ctx:
                self.define(value)
            known = self.terms.get(value)
            if known is not None and known.iri is not None:
                return known.iri
        if self.vocab is not None:
            return self.vocab + value
        raise NeedsJsonLd(f"the context maps {term!r} to the relative IRI {value!r}")


def resolved_iri(active: ActiveContext, term: str) -> str | None:
    """The canonical IRI `term` stands for in `active` (None when undefined)."""
    definition = active.terms.get(term)
    if definition is None or definition.iri is None:
        return None
    return canonical_iri(definition.iri)

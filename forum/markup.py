"""Markdown source to sanitized HTML, in one place.

CommonMark (markdown-it-py) with raw HTML turned off, then nh3 with an allow-list: whatever a member
or a peer sends, what reaches a page is inside that list. `@name` and `@name@host` become mention links.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from html import unescape
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "img", "h1", "h2", "h3", "h4", "h5", "h6", "span",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "class"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "code": {"class"},
    "span": {"class"},
    "th": {"align"},
    "td": {"align"},
}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "nofollow ugc noopener"

# A host with a port is tried first, so "@bob@forum.example:8443" keeps its port.
_MENTION = re.compile(
    r"@(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})(?:@(?P<host>[A-Za-z0-9.-]+:\d{1,5}|[A-Za-z0-9.-]+\.[A-Za-z]{2,}))?"
)
# markdown-it aligns table cells with a style attribute, which the sanitizer drops: use `align`.
_CELL_ALIGN = re.compile(r'<(th|td) style="text-align:(left|center|right)">')


@dataclass(frozen=True)
class Mention:
    username: str
    host: str | None

    @property
    def handle(self) -> str:
        return self.username if self.host is None else f"{self.username}@{self.host}"


@dataclass(frozen=True)
class Rendered:
    html: str
    mentions: tuple[Mention, ...] = field(default=())


def render(source: str) -> Rendered:
    """Markdown -> sanitized HTML, with the mentions it holds."""
    env: dict[str, Any] = {"mentions": []}
    html = sanitize(_CELL_ALIGN.sub(r'<\1 align="\2">', _MARKDOWN.render(source, env)))
    # Only mentions that became links count: one inside an image's alt text, say, does not.
    mentions = tuple(m for m in dict.fromkeys(env["mentions"]) if f'href="/u/{m.handle}"' in html)
    return Rendered(html=html, mentions=mentions)


_URL_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")


def sanitize(html: str) -> str:
    """Clean HTML from anywhere (our renderer, a remote peer) down to the allow-list."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
        attribute_filter=_drop_controlled_urls,
    )


def _drop_controlled_urls(_tag: str, attribute: str, value: str) -> str | None:
    """A URL whose scheme shows only once spaces, control or format characters are taken out
    (`j&#31;data:…`, `java&#x200b;script:`) is dropped: what a browser makes of it depends on how it
    trims, and no honest link looks like that."""
    if attribute not in ("href", "src"):
        return value
    squeezed = "".join(char for char in value if not (char.isspace() or unicodedata.category(char) in ("Cc", "Cf")))
    if squeezed == value:
        return value
    scheme = _URL_SCHEME.match(squeezed.lower())
    return None if scheme is not None and scheme.group(1) not in ALLOWED_URL_SCHEMES else value


def plain_text(html: str) -> str:
    """The text of sanitized HTML, for summaries and previews."""
    return re.sub(r"\s+", " ", unescape(nh3.clean(html, tags=set()))).strip()


def _mention_rule(state: StateInline, silent: bool) -> bool:
    pos = state.pos
    if state.src[pos] != "@":
        return False
    # A mention starts a word: "mail@example.org" is not one.
    if pos > 0 and (state.src[pos - 1].isalnum() or state.src[pos - 1] in "_./"):
        return False
    if state.linkLevel > 0:
        return False
    match = _MENTION.match(state.src, pos)
    if match is None:
        return False
    host = match.group("host")
    # Names never end in "." or "-": "thanks @bob." mentions bob, and so does "@bob.@lemmy.ml".
    raw_name = match.group("name") if host else match.group("name").rstrip(".-")
    name = raw_name.rstrip(".-")
    end = pos + 1 + len(raw_name) + (len(host) + 1 if host else 0)
    if not silent:
        mention = Mention(name, host.lower() if host else None)
        state.env.setdefault("mentions", []).append(mention)
        token = state.push("link_open", "a", 1)
        token.attrs = {"href": f"/u/{mention.handle}", "class": "mention"}
        text = state.push("text", "", 0)
        text.content = state.src[pos:end]
        state.push("link_close", "a", -1)
    state.pos = end
    return True


def _build() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["strikethrough", "table"])
    md.inline.ruler.before("emphasis", "mention", _mention_rule)
    return md


_MARKDOWN = _build()

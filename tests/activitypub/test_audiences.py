"""`domain_of` decides every origin check: its fast reading must give what `urlsplit` gives, for any string."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from activitypub.audiences import domain_of

URL_PIECES = st.sampled_from(
    ["https", "http", "HTTPS", "x-y+z.1", "1http", "://", ":", "//", "/", "?", "#", "@", "[", "]", "::1", "%2F",
     "example.org", "Example.ORG", "user:pw", ":8080", "a", " ", "\t", "\n", "\x00", "\u200b", "é"]
)  # fmt: skip


@settings(max_examples=2000, deadline=None, database=None)
@given(st.lists(st.one_of(URL_PIECES, st.text(max_size=3)), max_size=10).map("".join))
@example("https://Example.org:8443/users/ann?x=1#key")
@example(" https://evil.example/x")
@example("https://good.example\t.evil.example/x")
@example("https://user@host.example/")
@example("https://host.example#frag")
@example("http://[::1]:80/x")
def test_the_fast_reading_agrees_with_urlsplit(url: str) -> None:
    try:
        expected = urlsplit(url).netloc.lower()
    except ValueError:
        domain_of(url)  # urlsplit refuses a malformed IPv6 authority; domain_of answers, without an exception
        return
    assert domain_of(url) == expected


@pytest.mark.parametrize("url", ["http://[x/", "https://[::1/users/a", "https://]/a"])
def test_a_malformed_authority_is_no_error(url: str) -> None:
    assert isinstance(domain_of(url), str)

"""Themes as members and visitors meet them: discovery with parents, choosing one, inherited templates and
static files, the instance theme and its cached pages, and static paths that must not leave `static/`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from httpx import AsyncClient

from forum.config import THEMES_DIR, Settings
from forum.web.templating import ThemeError, discover_themes
from tests.conftest import BASE_URL, register, submit
from tests.factories import make_category, make_member

STYLESHEET = re.compile(r'<link rel="stylesheet" href="([^"?]+)\?v=[0-9a-f]+">')
DEFAULT_CSS = (THEMES_DIR / "default" / "static" / "style.css").read_bytes()


def stylesheets(html: str) -> list[str]:
    return STYLESHEET.findall(html)


def test_compact_is_discovered_with_its_parent_chain() -> None:
    themes = discover_themes(THEMES_DIR)
    assert themes["compact"].title == "Compact"
    assert themes["compact"].chain == (THEMES_DIR / "compact", THEMES_DIR / "default")
    assert themes["default"].chain == (THEMES_DIR / "default",)


def test_a_theme_whose_parent_is_missing_is_refused(tmp_path: Path) -> None:
    for name, manifest in {"default": 'name = "default"\n', "orphan": 'name = "orphan"\nparent = "gone"\n'}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "theme.toml").write_text(manifest)
    with pytest.raises(ThemeError, match="gone"):
        discover_themes(tmp_path)


def test_a_parent_loop_is_refused(tmp_path: Path) -> None:
    manifests = {"default": "", "ivy": 'parent = "moss"\n', "moss": 'parent = "ivy"\n'}
    for name, manifest in manifests.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "theme.toml").write_text(manifest)
    with pytest.raises(ThemeError, match="loop"):
        discover_themes(tmp_path)


async def test_member_who_picks_compact_gets_both_stylesheets(client: AsyncClient, settings: Settings) -> None:
    await make_category(settings, "general", "General")
    await register(client, "alice")
    created = await submit(client, "/c/general/new", {"title": "Dense lists", "body": "Hello"})
    thread_url = created.headers["location"]

    chosen = await submit(client, "/settings", {"action": "preferences", "language": "", "theme": "compact"})
    assert chosen.status_code == 303

    for url in ("/", "/c/general", thread_url, "/settings"):
        page = await client.get(url)
        assert stylesheets(page.text) == ["/static/compact/style.css", "/static/compact/compact.css"], url
    home = await client.get("/")
    assert 'class="thread-row compact-row' in home.text  # compact's own thread row, from its _macros.html
    thread = await client.get(thread_url)
    assert 'class="avatar' in thread.text  # the parent's post macro, re-exported by compact's _macros.html

    inherited = await client.get("/static/compact/style.css")
    assert inherited.status_code == 200
    assert inherited.content == DEFAULT_CSS
    own = await client.get("/static/compact/compact.css")
    assert own.status_code == 200
    assert b".compact-row" in own.content

    async with AsyncClient(transport=client._transport, base_url=BASE_URL) as visitor:
        page = await visitor.get(thread_url)
        assert stylesheets(page.text) == ["/static/default/style.css"]
        assert "compact" not in page.text


async def test_unknown_theme_in_settings_is_refused(client: AsyncClient) -> None:
    await register(client, "bob")
    refused = await submit(client, "/settings", {"action": "preferences", "language": "", "theme": "../default"})
    assert refused.status_code == 422
    assert "Pick one of the installed themes." in refused.text
    page = await client.get("/")
    assert stylesheets(page.text) == ["/static/default/style.css"]


async def test_admin_switching_the_instance_theme_changes_cached_visitor_pages(
    client: AsyncClient, settings: Settings
) -> None:
    await make_category(settings, "general", "General")
    await make_member(settings, "gaia", role="admin")
    async with AsyncClient(transport=client._transport, base_url=BASE_URL) as visitor:
        before = await visitor.get("/c/general")
        assert stylesheets(before.text) == ["/static/default/style.css"]
        etag = before.headers["etag"]
        assert (await visitor.get("/c/general", headers={"If-None-Match": etag})).status_code == 304

        logged_in = await submit(client, "/login", {"username": "gaia", "password": "correct horse battery"})
        assert logged_in.status_code == 303
        saved = await submit(
            client, "/admin",
            {"action": "site", "name": "Jardin", "description": "", "rules": "", "theme": "compact"},
        )  # fmt: skip
        assert saved.status_code == 303

        after = await visitor.get("/c/general", headers={"If-None-Match": etag})
        assert after.status_code == 200
        assert stylesheets(after.text) == ["/static/compact/style.css", "/static/compact/compact.css"]
        admin_page = await client.get("/admin")
        assert '<option value="compact" selected>Compact</option>' in admin_page.text


async def test_admin_cannot_pick_a_theme_that_is_not_installed(client: AsyncClient, settings: Settings) -> None:
    await make_member(settings, "gaia", role="admin")
    await submit(client, "/login", {"username": "gaia", "password": "correct horse battery"})
    refused = await submit(
        client, "/admin", {"action": "site", "name": "Jardin", "description": "", "rules": "", "theme": "nope"}
    )
    assert refused.status_code == 422
    async with AsyncClient(transport=client._transport, base_url=BASE_URL) as visitor:
        assert stylesheets((await visitor.get("/")).text) == ["/static/default/style.css"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/default/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
        "/static/default/..%2f..%2f..%2fpyproject.toml",
        "/static/default/../../../pyproject.toml",
        "/static/compact/%2e%2e/theme.toml",
        "/static/compact/%2e%2e/%2e%2e/default/theme.toml",
        "/static/default/%2fetc%2fpasswd",
        "/static/default//etc/passwd",
        "/static/default/",
        "/static/nope/style.css",
        "/static/%2e%2e/pyproject.toml",
        "/static/default/missing.css",
    ],
)
async def test_static_paths_never_leave_a_themes_static_folder(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert b"[project]" not in response.content
    assert b"root:" not in response.content


async def test_static_files_are_long_cached_and_versioned(client: AsyncClient) -> None:
    page = await client.get("/login")
    link = re.search(r'href="(/static/default/style\.css\?v=[0-9a-f]+)"', page.text)
    assert link is not None
    response = await client.get(link.group(1))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "immutable" in response.headers["cache-control"]

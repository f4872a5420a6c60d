"""Watching in a real Chromium with JavaScript off: the Watch toggle on a category and a thread, the header's
Watching page counting a reply as new, and the "follow a community elsewhere" form keeping what was typed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import MEMBER, PASSWORD, Forum, evidence

pytestmark = pytest.mark.browser


def test_member_watches_without_javascript_and_sees_what_is_new(
    browser: Browser, forum_server: Forum, tmp_path: Path
) -> None:
    reader = browser.new_context(base_url=forum_server.base_url, locale="en-US", java_script_enabled=False)
    writer = browser.new_context(base_url=forum_server.base_url, locale="en-US", java_script_enabled=False)
    page, other = reader.new_page(), writer.new_page()
    try:
        with evidence(page, tmp_path, forum_server):
            _log_in(other, "gaia")
            other.goto("/c/general/new")
            other.get_by_label("Title").fill("Frost dates")
            other.get_by_label("Message").fill("When is the last frost?")
            other.get_by_role("button", name="Start thread").click()
            expect(other).to_have_url(re.compile(r"/t/\d+$"))
            thread_url = other.url

            _log_in(page, MEMBER)
            page.goto("/c/general")
            watch = page.get_by_role("button", name="Watch", exact=True)
            expect(watch).to_have_attribute("aria-pressed", "false")
            watch.click()
            expect(page).to_have_url(re.compile(r"/c/general$"))
            expect(page.get_by_role("button", name="Watching")).to_have_attribute("aria-pressed", "true")

            page.goto(thread_url)
            page.get_by_role("button", name="Watch", exact=True).click()
            expect(page.get_by_role("button", name="Watching")).to_have_attribute("aria-pressed", "true")

            other.get_by_role("region", name="Your reply").get_by_label("Reply", exact=True).fill("Mid-May here.")
            other.get_by_role("button", name="Post reply").click()
            expect(other.get_by_role("article")).to_have_count(2)

            page.get_by_role("navigation", name="Account").get_by_role("link", name="Watching").click()
            threads = page.get_by_role("region", name="Threads")
            expect(threads.get_by_role("link", name="Frost dates")).to_be_visible()
            expect(threads.get_by_text("1 new")).to_be_visible()
            expect(page.get_by_role("region", name="Categories").get_by_role("link", name="General")).to_be_visible()
            page.screenshot(path=tmp_path / "watching.png", full_page=True)

            threads.get_by_role("link", name="Frost dates").click()
            expect(page.get_by_text("New since your last visit")).to_be_visible()
            page.screenshot(path=tmp_path / "thread.png", full_page=True)

            page.get_by_role("navigation", name="Account").get_by_role("link", name="Watching").click()
            expect(page.get_by_text("1 new")).to_have_count(0)
            field = page.get_by_label("Handle or address")
            field.fill("nobody@127.0.0.1:9")
            page.get_by_role("button", name="Follow", exact=True).click()
            expect(page.get_by_role("alert")).to_contain_text("does not know it, or did not answer")
            expect(field).to_have_value("nobody@127.0.0.1:9")
            expect(field).to_have_attribute("aria-invalid", "true")
    finally:
        reader.close()
        writer.close()


def _log_in(page: Page, name: str) -> None:
    page.goto("/login")
    page.get_by_label("Username or email").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Account").get_by_role("link", name=name, exact=True)).to_be_visible()

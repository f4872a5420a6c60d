"""A member's path through the forum in a real Chromium: sign up, start a thread, reply, switch to French;
a French visitor's first page; and the same posting path with JavaScript turned off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import MEMBER, PASSWORD, Forum, evidence, french

pytestmark = pytest.mark.browser

MARKDOWN_HINT = re.compile(r"^Markdown works")


def test_member_signs_up_posts_replies_and_switches_to_french(
    browser: Browser, forum_server: Forum, tmp_path: Path
) -> None:
    context = browser.new_context(base_url=forum_server.base_url, locale="en-US")
    page = context.new_page()
    try:
        with evidence(page, tmp_path, forum_server):
            page.goto("/")
            page.get_by_role("link", name="Sign up").click()
            page.get_by_label("Username", exact=True).fill("alice")
            page.get_by_label("Email", exact=True).fill("alice@example.org")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign up").click()
            expect(_account_nav(page).get_by_role("link", name="alice", exact=True)).to_be_visible()

            thread_url = _start_thread(page, "Tomatoes in May", "Plant them **deep**, water *often*.")
            expect(page.get_by_role("article").first.locator("strong")).to_have_text("deep")
            expect(page.get_by_role("article").first.locator("em")).to_have_text("often")

            _reply(page, "Mine grew best against a south wall.")
            # Each post is an article named by its author and time, so a screen reader's list of
            # articles tells two posts by the same member apart.
            articles = page.get_by_role("article", name=re.compile(r"^alice \S"))
            expect(articles).to_have_count(2)
            page.screenshot(path=tmp_path / "thread.png", full_page=True)

            _account_nav(page).get_by_role("link", name="Settings").click()
            page.get_by_label("Language").select_option(label="Français")
            page.get_by_role("button", name="Save preferences").click()
            expect(page.locator("html")).to_have_attribute("lang", "fr")
            account_fr = _account_nav(page, french("Account"))
            expect(account_fr.get_by_role("link", name=french("Settings"), exact=True)).to_be_visible()
            expect(account_fr.get_by_role("button", name=french("Log out"), exact=True)).to_be_visible()
            expect(page.get_by_role("heading", level=1, name=french("Settings"))).to_be_visible()

            # The choice is the member's, not the page's: the thread is in French too.
            page.goto(thread_url)
            expect(page.locator("html")).to_have_attribute("lang", "fr")
            expect(page.get_by_role("heading", level=1, name="Tomatoes in May")).to_be_visible()
    finally:
        context.close()


def test_french_visitor_sees_the_home_page_in_french(browser: Browser, forum_server: Forum, tmp_path: Path) -> None:
    context = browser.new_context(base_url=forum_server.base_url, locale="fr-FR")
    page = context.new_page()
    try:
        with evidence(page, tmp_path, forum_server):
            page.goto("/")
            expect(page.locator("html")).to_have_attribute("lang", "fr")
            account = _account_nav(page, french("Account"))
            expect(account.get_by_role("link", name=french("Sign up"), exact=True)).to_be_visible()
            expect(account.get_by_role("link", name=french("Log in"), exact=True)).to_be_visible()
            categories = page.get_by_role("region", name=french("Categories"))
            expect(categories.get_by_role("link", name="General", exact=True)).to_be_visible()
    finally:
        context.close()


def test_member_logs_in_and_posts_without_javascript(browser: Browser, forum_server: Forum, tmp_path: Path) -> None:
    context = browser.new_context(base_url=forum_server.base_url, locale="en-US", java_script_enabled=False)
    page = context.new_page()
    try:
        with evidence(page, tmp_path, forum_server):
            page.goto("/")
            _account_nav(page).get_by_role("link", name="Log in").click()
            page.get_by_label("Username or email").fill(MEMBER)
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(_account_nav(page).get_by_role("link", name=MEMBER, exact=True)).to_be_visible()

            _start_thread(page, "Seed swap, no scripts", "Who has **borage**?")
            _reply(page, "I do, plenty.")
    finally:
        context.close()


def _account_nav(page: Page, name: str = "Account") -> Locator:
    """The header's account navigation (its accessible name is translated like the rest of the page)."""
    return page.get_by_role("navigation", name=name, exact=True)


def _start_thread(page: Page, title: str, body: str) -> str:
    """From the home page: the General category, "New thread", the form; returns the new thread's URL."""
    page.get_by_role("region", name="Categories").get_by_role("link", name="General", exact=True).click()
    page.get_by_role("link", name="New thread").click()
    page.get_by_label("Title").fill(title)
    message = page.get_by_label("Message")
    expect(message).to_have_accessible_description(MARKDOWN_HINT)
    message.fill(body)
    page.get_by_role("button", name="Start thread").click()
    expect(page).to_have_url(re.compile(r"/t/\d+$"))
    expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()
    return page.url


def _reply(page: Page, body: str) -> None:
    """Post `body` with the reply form under the thread, and see it become the thread's last post."""
    posts_before = page.get_by_role("article").count()
    reply_form = page.get_by_role("region", name="Your reply")
    reply = reply_form.get_by_label("Reply", exact=True)
    expect(reply).to_have_accessible_description(MARKDOWN_HINT)
    reply.fill(body)
    reply_form.get_by_role("button", name="Post reply").click()
    expect(page.get_by_role("article")).to_have_count(posts_before + 1)
    expect(page.get_by_role("article").last).to_contain_text(body)

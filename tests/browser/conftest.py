"""Fixtures for the browser tests: a real `forum serve` in a subprocess on a free loopback port (its
category and accounts made with the `forum` command first), and the system's headless Chromium driven by
Playwright's sync API. Chromium is never downloaded: FORUM_TEST_CHROMIUM names it (CI sets it), else the
`chromium` on PATH; without either the tests are skipped."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from forum.i18n import LOCALE_DIR

FORUM = [sys.executable, "-m", "forum.cli"]
PASSWORD = "correct horse battery"
MEMBER = "bob"  # made with the CLI, for the tests that log in rather than sign up
SECRET_KEY = "browser-test-secret-not-for-production"
START_TIMEOUT = 30.0
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Only loopback is reachable here; a proxy from the environment must not catch 127.0.0.1.
    "--no-proxy-server",
]


@dataclass(frozen=True)
class Forum:
    """A running `forum serve`: where to reach it and where it logs."""

    base_url: str
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def chromium_path() -> str | None:
    configured = os.environ.get("FORUM_TEST_CHROMIUM", "")
    if configured:
        # Named on purpose (CI does): a wrong path is a broken set-up, not a reason to skip.
        if not Path(configured).exists():
            pytest.fail(f"FORUM_TEST_CHROMIUM={configured} does not exist")
        return configured
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium to drive: set FORUM_TEST_CHROMIUM or install Debian's `chromium` (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def forum_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forum]:
    """`forum serve` on SQLite in a fresh data dir, with category `general`, the admin `gaia` (so the forum is
    past first-run setup) and the member `bob`."""
    data_dir = tmp_path_factory.mktemp("forum-data")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    # Only our settings: a FORUM_DATABASE_URL from the developer's shell must not leak into the server.
    env = {key: value for key, value in os.environ.items() if not key.startswith("FORUM_")}
    env.update(
        FORUM_DATA_DIR=str(data_dir),
        FORUM_BASE_URL=base_url,
        FORUM_SECRET_KEY=SECRET_KEY,
        FORUM_LOG_LEVEL="WARNING",
    )
    _cli(env, data_dir, "db", "upgrade")
    _cli(env, data_dir, "category", "create", "general", "--name", "General")
    for name, role in (("gaia", "admin"), (MEMBER, "member")):
        _cli(
            env, data_dir, "user", "create", name, "--email", f"{name}@example.org", "--role", role,
            "--password-stdin", stdin=PASSWORD,
        )  # fmt: skip
    log = data_dir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*FORUM, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=data_dir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    forum = Forum(base_url, log)
    try:
        _wait_healthy(forum, process)
        yield forum
    finally:
        _stop(process)


@contextmanager
def evidence(page: Page, folder: Path, forum: Forum) -> Iterator[None]:
    """On a failed step, screenshot the page and name it, the URL and the server's last log lines."""
    try:
        yield
    except (AssertionError, PlaywrightError) as error:
        shot = folder / "failure.png"
        try:
            page.screenshot(path=shot, full_page=True)
            where = f"screenshot: {shot}"
        except PlaywrightError as screenshot_error:
            where = f"no screenshot ({screenshot_error.message})"
        raise AssertionError(
            f"{error}\n  page: {page.url}\n  {where}\n  server log {forum.log}:\n{forum.log_tail()}"
        ) from error


def french(message: str) -> str:
    """What the French catalog makes of `message`, read from the same `.po` file the server loads
    (so the tests follow the translator's wording); fuzzy entries count as missing, as in the server."""
    po = LOCALE_DIR / "fr" / "LC_MESSAGES" / "messages.po"
    assert po.exists(), f"no French catalog at {po}"
    with po.open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    entry = catalog.get(message)
    translated = entry.string if entry is not None and not entry.fuzzy else None
    assert isinstance(translated, str) and translated, f"the French catalog does not translate {message!r}"
    return translated


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [*FORUM, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"`forum {' '.join(args)}` failed: {done.stderr or done.stdout}"


def _wait_healthy(forum: Forum, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(base_url=forum.base_url, trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"`forum serve` exited with {process.returncode}:\n{forum.log_tail()}")
            try:
                if http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"`forum serve` did not answer /healthz within {START_TIMEOUT:.0f} s:\n{forum.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)

"""The `forum` command as an operator runs it: the real console script in a subprocess, on a fresh data dir.

Good input does what it says and prints it; bad input exits 1 with one line on stderr starting with
`forum:` and never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import make_url, select

from forum import migrate, passwords
from forum.app import create_app
from forum.config import load_settings
from forum.db import create_engine, sessionmaker
from forum.models import Category, RoleGrant
from forum.services import accounts
from tests.conftest import BASE_URL, PG_URL
from tests.forum.test_migrations import admin_execute

FORUM_SCRIPT = Path(sys.executable).with_name("forum")
PASSWORD = "correct horse battery"


def run_forum(
    data_dir: Path, *args: str, stdin: str = "", database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `forum` script with only the environment an operator would set."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FORUM_")}
    env["FORUM_DATA_DIR"] = str(data_dir)
    env["FORUM_LOG_LEVEL"] = "WARNING"
    if database_url is not None:
        env["FORUM_DATABASE_URL"] = database_url
    command = [str(FORUM_SCRIPT)] if FORUM_SCRIPT.exists() else [sys.executable, "-m", "forum.cli"]
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], reason: str) -> None:
    """Exit 1, one line on stderr starting with `forum:`, and nothing that looks like a crash."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("forum: "), result.stderr
    assert reason.lower() in lines[0].lower(), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the schema, member Bob and category `general`; the refusals below change nothing."""
    data_dir = tmp_path_factory.mktemp("cli")
    ok(run_forum(data_dir, "db", "upgrade"))
    ok(run_forum(data_dir, "user", "create", "Bob", "--email", "bob@example.org", "--password-stdin", stdin=PASSWORD))
    ok(run_forum(data_dir, "category", "create", "general", "--name", "General"))
    return data_dir


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for one CLI session (the CLI migrates it itself)."""
    if not PG_URL:
        pytest.skip("FORUM_TEST_DATABASE_URL is not set")
    name = f"jardin_cli_{secrets.token_hex(6)}"
    asyncio.run(admin_execute(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _operator_session(data_dir: Path, database_url: str | None) -> None:
    """Everything an operator does on day one, each step checked through what it printed and stored."""
    upgraded = ok(run_forum(data_dir, "db", "upgrade", database_url=database_url))
    head = migrate.head_revision(database_url or f"sqlite+aiosqlite:///{data_dir / 'forum.db'}")
    assert head is not None and head in upgraded
    current = ok(run_forum(data_dir, "db", "current", database_url=database_url))
    assert current.strip() == f"{head} (head)"

    created = ok(run_forum(
        data_dir, "user", "create", "Alice", "--email", "alice@example.org", "--role", "admin", "--password-stdin",
        stdin=PASSWORD + "\n", database_url=database_url,
    ))  # fmt: skip
    assert "created admin Alice" in created
    ok(run_forum(
        data_dir, "user", "create", "carol", "--email", "carol@example.org", "--password-stdin",
        stdin=PASSWORD + "\n", database_url=database_url,
    ))  # fmt: skip
    made = ok(run_forum(
        data_dir, "category", "create", "backroom", "--name", "Back room", "--description", "Staff only",
        "--private", database_url=database_url,
    ))  # fmt: skip
    assert "created category backroom" in made

    granted = ok(run_forum(data_dir, "role", "grant", "carol", "gardener", database_url=database_url))
    assert "carol is now gardener instance-wide" in granted
    ok(run_forum(data_dir, "role", "grant", "carol", "concierge", "--category", "backroom", database_url=database_url))
    revoked = ok(run_forum(data_dir, "role", "revoke", "carol", "gardener", database_url=database_url))
    assert "no longer gardener" in revoked
    refused(run_forum(data_dir, "role", "revoke", "carol", "gardener", database_url=database_url), "not gardener")

    token = ok(run_forum(data_dir, "token", "create", "alice", database_url=database_url)).strip()
    assert token.startswith(accounts.TOKEN_PREFIX)
    assert len(token.splitlines()) == 1

    env = {"FORUM_DATA_DIR": str(data_dir), **({"FORUM_DATABASE_URL": database_url} if database_url else {})}
    asyncio.run(_check_stored(env, token))


async def _check_stored(env: dict[str, str], token: str) -> None:
    settings = load_settings(env)
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session:
            found = await accounts.member_for_token(session, token)
            assert found is not None
            assert found[0].username == "Alice"
            assert found[0].is_admin
            assert passwords.verify_password(found[0].password_hash, PASSWORD)
            category = await session.scalar(select(Category).where(Category.slug == "backroom"))
            assert category is not None and category.private and category.description == "Staff only"
            carol = await accounts.get_member(session, "carol")
            grants = set((await session.execute(
                select(RoleGrant.role, RoleGrant.category_id).where(RoleGrant.member_id == carol.id)
            )).all())  # fmt: skip
            assert grants == {("concierge", category.id)}
    finally:
        await engine.dispose()

    # The printed token works against the JSON API.
    app = create_app(settings.with_changes(base_url=BASE_URL), run_worker=False)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url=BASE_URL) as http,
    ):
        me = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json()["handle"] == "Alice"
        assert me.json()["admin"] is True
        wrong = await http.get("/api/v1/me", headers={"Authorization": "Bearer jdn_not-a-token"})
        assert wrong.status_code == 401


def test_operator_session_on_sqlite(tmp_path: Path) -> None:
    _operator_session(tmp_path, None)


def test_operator_session_on_postgresql(tmp_path: Path, postgres_database: str) -> None:
    _operator_session(tmp_path, postgres_database)


def test_password_comes_from_stdin_only(populated: Path) -> None:
    ok(run_forum(populated, "user", "create", "dora", "--email", "dora@example.org", "--password-stdin",
                 stdin="a password with spaces  \n"))  # fmt: skip

    async def check() -> None:
        settings = load_settings({"FORUM_DATA_DIR": str(populated)})
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with sessionmaker(engine)() as session:
                assert await accounts.authenticate(session, "dora", "a password with spaces  ") is not None
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_no_terminal_and_no_password_stdin_is_refused(populated: Path) -> None:
    refused(run_forum(populated, "user", "create", "erin", "--email", "erin@example.org"), "--password-stdin")


BAD_INPUT = {
    "taken name": (
        ["user", "create", "bob", "--email", "other@example.org", "--password-stdin"],
        PASSWORD,
        "already taken",
    ),
    "taken name, other case": (
        ["user", "create", "BOB", "--email", "other@example.org", "--password-stdin"],
        PASSWORD,
        "already taken",
    ),
    "name taken by a category": (
        ["user", "create", "General", "--email", "g@example.org", "--password-stdin"],
        PASSWORD,
        "already taken",
    ),
    "taken email": (["user", "create", "robert", "--email", "BOB@example.org", "--password-stdin"], PASSWORD, "email"),
    "reserved name": (
        ["user", "create", "Admin", "--email", "a@example.org", "--password-stdin"],
        PASSWORD,
        "reserved",
    ),
    "bad name": (
        ["user", "create", "no spaces", "--email", "n@example.org", "--password-stdin"],
        PASSWORD,
        "letters, digits",
    ),
    "bad email": (["user", "create", "frank", "--email", "not-an-email", "--password-stdin"], PASSWORD, "email"),
    "short password": (
        ["user", "create", "frank", "--email", "f@example.org", "--password-stdin"],
        "short",
        "at least 8",
    ),
    "token for unknown user": (["token", "create", "nobody"], "", "nobody"),
    "role for unknown user": (["role", "grant", "nobody", "gardener"], "", "nobody"),
    "revoke for unknown user": (["role", "revoke", "nobody", "concierge"], "", "nobody"),
    "role in unknown category": (["role", "grant", "Bob", "gardener", "--category", "nope"], "", "nope"),
    "taken slug": (["category", "create", "GENERAL", "--name", "Again"], "", "already taken"),
    "slug taken by a member": (["category", "create", "bob", "--name", "Bob's"], "", "already taken"),
    "reserved slug": (["category", "create", "inbox", "--name", "Inbox"], "", "reserved"),
    "empty category name": (["category", "create", "misc", "--name", " "], "", "name"),
    "downgrade to unknown revision": (["db", "downgrade", "nope"], "", "nope"),
}


@pytest.mark.parametrize(("args", "stdin", "reason"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line(populated: Path, args: list[str], stdin: str, reason: str) -> None:
    refused(run_forum(populated, *args, stdin=stdin), reason)


@pytest.mark.parametrize(
    "args",
    [
        ["user", "create", "gina", "--email", "g@example.org", "--password-stdin"],
        ["category", "create", "general", "--name", "General"],
        ["role", "grant", "gina", "gardener"],
        ["token", "create", "gina"],
    ],
    ids=["user", "category", "role", "token"],
)
def test_commands_before_upgrade_say_so(tmp_path: Path, args: list[str]) -> None:
    refused(run_forum(tmp_path, *args, stdin=PASSWORD), "forum db upgrade")


def test_db_current_on_a_fresh_dir(tmp_path: Path) -> None:
    shown = ok(run_forum(tmp_path, "db", "current"))
    head = migrate.head_revision(f"sqlite+aiosqlite:///{tmp_path / 'forum.db'}")
    assert shown.strip() == f"empty (head is {head})"


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    refused(run_forum(tmp_path, "db", "current", database_url="mysql://nope"), "FORUM_DATABASE_URL")


def test_a_slug_of_digits_only_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "FORUM_DATA_DIR": str(tmp_path)}
    env.pop("FORUM_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "forum.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    result = subprocess.run(
        [sys.executable, "-m", "forum.cli", "category", "create", "123", "--name", "Numbers"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("forum: A slug needs at least one letter")
    assert "Traceback" not in result.stderr


SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "fediverse-samples"


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared fediverse samples are not on this machine")
def test_federation_inspect_reads_a_document_offline_or_says_why_not(tmp_path: Path) -> None:
    page = ok(
        run_forum(
            tmp_path, "federation", "inspect", str(SAMPLES / "lemmy/activities/create_or_update/create_page.json")
        )
    )
    assert "becomes: thread (Create of Page)" in page
    assert "title: test post" in page
    private = run_forum(
        tmp_path, "federation", "inspect", "-",
        stdin=(SAMPLES / "lemmy/activities/create_or_update/create_private_message.json").read_text(),
    )  # fmt: skip
    assert private.returncode == 1
    assert "private messages" in private.stdout.lower()
    refused(run_forum(tmp_path, "federation", "inspect", str(tmp_path / "missing.json")), "cannot read")


def test_federation_lookup_refuses_a_bad_handle_in_one_line(populated: Path) -> None:
    refused(run_forum(populated, "federation", "lookup", "not a handle"), "no member or category is named")

"""The `forum` command (the other composition root): serve, worker, db, user, role, category, token."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from activitypub.protocol.jsonld import Normalizer
from activitypub.understand import inspect_bytes
from forum import __version__, migrate
from forum.config import ConfigError, Settings, load_settings
from forum.db import create_engine, sessionmaker
from forum.errors import ForumError, NotFound
from forum.events import EventBus
from forum.models import RoleGrant
from forum.permissions import DUTIES, GUEST, Viewer
from forum.services import accounts, site
from forum.services import categories as category_service
from forum.web.api.resolve import resolve

T = TypeVar("T")


class CommandError(Exception):
    """A one-line reason the command failed; printed to stderr with exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = load_settings()
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        return int(args.handler(settings, args) or 0)
    except (CommandError, ConfigError, ForumError) as error:
        print(f"forum: {getattr(error, 'message', None) or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forum", description="Jardin, a forum that federates.")
    parser.add_argument("--version", action="version", version=f"jardin {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="upgrade the database, then serve the forum")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="web processes")
    serve.add_argument("--no-worker", action="store_true", help="leave background work to `forum worker`")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run background work (federation delivery, housekeeping)")
    worker.add_argument("--concurrency", type=int, default=4)
    worker.add_argument("--once", action="store_true", help="run each job once and exit")
    worker.set_defaults(handler=_worker)

    db = commands.add_parser("db", help="database migrations").add_subparsers(metavar="ACTION")
    db.add_parser("upgrade", help="upgrade to the latest schema").set_defaults(handler=_db_upgrade)
    db.add_parser("current", help="print the schema revision").set_defaults(handler=_db_current)
    down = db.add_parser("downgrade", help="go back to revision REV")
    down.add_argument("revision")
    down.set_defaults(handler=_db_downgrade)

    user = commands.add_parser("user", help="local accounts").add_subparsers(metavar="ACTION")
    create = user.add_parser("create", help="create an account")
    create.add_argument("name")
    create.add_argument("--email", required=True)
    create.add_argument("--role", choices=["member", "admin"], default="member")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(handler=_user_create)

    role = commands.add_parser("role", help="moderator roles").add_subparsers(metavar="ACTION")
    for action in ("grant", "revoke"):
        command = role.add_parser(action, help=f"{action} a duty")
        command.add_argument("name")
        command.add_argument("duty", choices=DUTIES)
        command.add_argument("--category", metavar="SLUG")
        command.set_defaults(handler=_role, action=action)

    category = commands.add_parser("category", help="categories").add_subparsers(metavar="ACTION")
    category_create = category.add_parser("create", help="create a category")
    category_create.add_argument("slug")
    category_create.add_argument("--name", required=True)
    category_create.add_argument("--description", default="")
    category_create.add_argument("--private", action="store_true")
    category_create.set_defaults(handler=_category_create)

    token = commands.add_parser("token", help="API tokens").add_subparsers(metavar="ACTION")
    token_create = token.add_parser("create", help="print a new API token for NAME")
    token_create.add_argument("name")
    token_create.add_argument("--label", default="cli", help="the token's name in the settings page")
    token_create.set_defaults(handler=_token_create)

    federation = commands.add_parser("federation", help="federation tools").add_subparsers(metavar="ACTION")
    lookup = federation.add_parser("lookup", help="resolve a remote actor or object")
    lookup.add_argument("target")
    lookup.set_defaults(handler=_federation_lookup)
    backfill = federation.add_parser("backfill", help="read a remote thread's conversation from its context")
    backfill.add_argument("thread", help="the thread's id here, or the address of a remote thread or post")
    backfill.set_defaults(handler=_federation_backfill)
    inspect = federation.add_parser("inspect", help="read an ActivityStreams document offline")
    inspect.add_argument("file", help="a JSON file, or - for standard input")
    inspect.set_defaults(handler=_federation_inspect)
    return parser


def _run_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction against an up-to-date database."""

    async def go() -> T:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    _require_schema(settings)
    return asyncio.run(go())


def _require_schema(settings: Settings) -> None:
    async def current() -> str | None:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(current())
    except OSError as error:
        raise CommandError(f"cannot reach the database: {error}") from error
    if revision != migrate.head_revision(settings.database_url):
        raise CommandError("the database schema is not up to date; run `forum db upgrade` first")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from forum.server import serve

    migrate.upgrade(settings.database_url)

    async def setup_code(session: AsyncSession) -> str | None:
        return await site.issue_setup_code(session) if await site.needs_setup(session) else None

    code = _run_db(settings, setup_code)
    if code is not None:
        print(
            f"\n  This forum has no administrator yet. Open {settings.base_url}/setup and enter the code:\n\n"
            f"      {code}\n",
            flush=True,
        )
    serve(settings, host=args.host, port=args.port, workers=args.workers, run_worker=not args.no_worker)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from forum.server import run_worker

    _require_schema(settings)
    asyncio.run(run_worker(settings, once=args.once))
    return 0


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    migrate.upgrade(settings.database_url)
    print(f"database at revision {migrate.head_revision(settings.database_url)}")
    return 0


def _db_current(settings: Settings, args: argparse.Namespace) -> int:
    async def current() -> str | None:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(current())
    head = migrate.head_revision(settings.database_url)
    print(f"{revision or 'empty'}{' (head)' if revision == head else f' (head is {head})'}")
    return 0


def _db_downgrade(settings: Settings, args: argparse.Namespace) -> int:
    try:
        migrate.downgrade(settings.database_url, args.revision)
    except Exception as error:  # Alembic raises several kinds for an unknown revision
        raise CommandError(f"cannot downgrade to {args.revision!r}: {error}") from error
    print(f"database at revision {args.revision}")
    return 0


def _user_create(settings: Settings, args: argparse.Namespace) -> int:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else _prompt_password()

    async def create(session: AsyncSession) -> Any:
        return await accounts.register(
            session,
            settings.base_url,
            username=args.name,
            email=args.email,
            password=password,
            role=args.role,
        )

    member = _run_db(settings, create)
    print(f"created {args.role} {member.actor.username} ({settings.base_url}/u/{member.actor.username})")
    return 0


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask the password on; use --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("the two passwords differ")
    return first


def _role(settings: Settings, args: argparse.Namespace) -> int:
    async def change(session: AsyncSession) -> str:
        member = await accounts.get_member(session, args.name)
        category_id = None
        if args.category:
            admin_view = _admin_viewer()
            category_id = (await category_service.get_category(session, admin_view, args.category)).id
        where = (
            RoleGrant.member_id == member.id,
            RoleGrant.role == args.duty,
            RoleGrant.category_id.is_(None) if category_id is None else RoleGrant.category_id == category_id,
        )
        existing = await session.scalar(select(RoleGrant.id).where(*where))
        scope = f"in {args.category}" if args.category else "instance-wide"
        if args.action == "grant":
            if existing is None:
                session.add(RoleGrant(member_id=member.id, role=args.duty, category_id=category_id))
            return f"{member.actor.username} is now {args.duty} {scope}"
        if existing is None:
            raise NotFound(f"{member.actor.username} is not {args.duty} {scope}")
        await session.execute(delete(RoleGrant).where(*where))
        return f"{member.actor.username} is no longer {args.duty} {scope}"

    print(_run_db(settings, change))
    return 0


def _admin_viewer() -> Viewer:
    return Viewer(member_id=0, is_admin=True)


def _category_create(settings: Settings, args: argparse.Namespace) -> int:
    async def create(session: AsyncSession) -> Any:
        return await category_service.create_category(
            session, EventBus(), settings.base_url, slug=args.slug, name=args.name,
            description=args.description, private=args.private,
        )  # fmt: skip

    category = _run_db(settings, create)
    print(f"created category {category.slug} ({settings.base_url}/c/{category.slug})")
    return 0


def _token_create(settings: Settings, args: argparse.Namespace) -> int:
    async def create(session: AsyncSession) -> str:
        member = await accounts.get_member(session, args.name)
        _token, plain = await accounts.create_token(session, member, args.label)
        return plain

    print(_run_db(settings, create))
    return 0


def _federation_inspect(settings: Settings, args: argparse.Namespace) -> int:
    """Offline: how Jardin reads a document, or why it would refuse it (exit 1). Never fetches."""
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {args.file}: {error.strerror}") from None
    status, text = inspect_bytes(raw, Normalizer())
    print(text)
    return status


def _federation_lookup(settings: Settings, args: argparse.Namespace) -> int:
    """WebFinger and a signed fetch through the guarded client; prints the stored record as JSON."""
    from forum.app import build_context, federation_of

    async def look() -> dict[str, Any]:
        forum = build_context(settings)
        try:
            async with forum.write() as session:
                return await resolve(session, settings, GUEST, args.target, forum.resolver)
        finally:
            await federation_of(forum).aclose()
            await forum.engine.dispose()

    _require_schema(settings)
    print(json.dumps(asyncio.run(look()), indent=2, ensure_ascii=False))
    return 0


def _federation_backfill(settings: Settings, args: argparse.Namespace) -> int:
    """Walk a remote thread's `context` collection now (looked up first when given by address); prints the outcome."""
    from activitypub.backfill import Backfiller
    from forum.app import build_context, federation_of
    from forum.models.base import is_id

    async def walk() -> str:
        forum = build_context(settings)
        try:
            target = args.thread.strip()
            if target.isascii() and target.isdigit():
                if not is_id(target):
                    raise CommandError(f"{target} is no thread id")
                thread_id = int(target)
            else:
                async with forum.read() as session:
                    post = await forum.resolver.resolve_post(session, target)
                if post is None:
                    raise CommandError(f"{target} could not be looked up (see the log for why)")
                thread_id = post.thread_id
            return f"thread {thread_id}: {await Backfiller(federation_of(forum)).backfill(thread_id)}"
        finally:
            await federation_of(forum).aclose()
            await forum.engine.dispose()

    _require_schema(settings)
    print(asyncio.run(walk()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

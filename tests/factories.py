"""Factories: records made through the services, as the CLI and the pages make them."""

from __future__ import annotations

from forum.config import Settings
from forum.db import create_engine, sessionmaker
from forum.events import EventBus
from forum.models import Category, Member
from forum.services import accounts
from forum.services import categories as category_service


async def make_category(settings: Settings, slug: str, name: str, *, private: bool = False) -> Category:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            return await category_service.create_category(
                session, EventBus(), settings.base_url, slug=slug, name=name, private=private
            )
    finally:
        await engine.dispose()


async def make_member(
    settings: Settings, name: str, *, password: str = "correct horse battery", role: str = "member"
) -> Member:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with sessionmaker(engine)() as session, session.begin():
            return await accounts.register(
                session, settings.base_url, username=name, email=f"{name.lower()}@example.org",
                password=password, role=role,
            )  # fmt: skip
    finally:
        await engine.dispose()

"""Loading what the API shows, through the same reading services and permission checks as the pages.

A record the caller may not see (a private category, its threads and posts) is reported missing.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from forum.errors import InvalidInput, NotFound
from forum.models import Actor, Category, Thread
from forum.permissions import Viewer, can_see_category
from forum.services import reading
from forum.web.api.bodies import MAX_ID


async def visible_thread(session: AsyncSession, viewer: Viewer, thread_id: int) -> tuple[Thread, Category, Actor]:
    row = (
        await session.execute(
            select(Thread, Category, Actor)
            .join(Category, Category.id == Thread.category_id)
            .join(Actor, Actor.id == Thread.author_id)
            .where(Thread.id == thread_id)
        )
    ).first()
    if row is None or not can_see_category(viewer, row[1].id, row[1].private):
        raise NotFound("No such thread.")
    return row[0], row[1], row[2]


async def thread_with_posts(
    session: AsyncSession, viewer: Viewer, thread_id: int, page: int
) -> tuple[reading.ThreadPage, Actor]:
    view = await reading.thread_page(session, viewer, thread_id, page)
    starter = await session.get(Actor, view.thread.author_id)
    assert starter is not None
    return view, starter


async def visible_post(session: AsyncSession, viewer: Viewer, post_id: int) -> tuple[reading.PostView, int]:
    """One post as the thread page shows it, and its thread's id."""
    thread_id, page = await reading.post_location(session, viewer, post_id)
    view = await reading.thread_page(session, viewer, thread_id, page)
    found = next((p for p in view.posts if p.id == post_id), None)
    if found is None:
        raise NotFound("No such post.")
    return found, thread_id


async def thread_starters(session: AsyncSession, thread_ids: list[int]) -> dict[int, tuple[str | None, Actor]]:
    """The ActivityPub id and the author of each listed thread (the listing rows carry neither)."""
    if not thread_ids:
        return {}
    rows = await session.execute(
        select(Thread.id, Thread.ap_id, Actor)
        .join(Actor, Actor.id == Thread.author_id)
        .where(Thread.id.in_(thread_ids))
    )
    return {row[0]: (row[1], row[2]) for row in rows}


def checked_cursor(cursor: str | None) -> str | None:
    """A cursor as `reading.category_threads` wrote it; a forged one is refused before the query."""
    if cursor is None:
        return None
    try:
        stamp, thread_id = reading.decode_cursor(cursor)
    except InvalidInput as error:
        raise InvalidInput(error.message, field="after") from error
    if stamp.tzinfo is None or not 1 <= thread_id <= MAX_ID:
        raise InvalidInput("That page cursor is damaged; start again from the first page.", field="after")
    return cursor

"""Fetches kept out of a database transaction: the inbox worker applies an activity with its fetches deferred.

An activity may need documents from elsewhere while it is applied (an unknown author, the posts a reply
answers). Fetched inside the worker's transaction, each would hold that transaction open for as long as the
peer takes, and on SQLite the write lock with it: no member could post meanwhile. So the worker applies an
activity inside `deferring(answers)`: a fetch whose answer is not in `answers` raises `NeedsFetch`, the
worker rolls the transaction back, makes that fetch outside any transaction (`answers.make`), and applies the
activity again, where the same call now returns the answer, or raises the error the fetch raised. Handlers
see their fetches behave as they always did; only the worker knows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")


class NeedsFetch(Exception):
    """A fetch made while deferring, whose answer is not known yet."""

    def __init__(self, key: Hashable, fetch: Callable[[], Awaitable[Any]]) -> None:
        super().__init__(f"a fetch is needed first: {key!r}")
        self.key = key
        self.fetch = fetch


class TooManyFetches(Exception):
    """What was being applied needed more documents than its bound."""


class DeferredAnswers:
    """The answers (or errors) of the fetches made outside the transaction so far, by what was asked."""

    def __init__(self) -> None:
        self._answers: dict[Hashable, tuple[bool, Any]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def answer(self, key: Hashable, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """The answer to `key` if it was fetched, its error raised again if it failed; else `NeedsFetch`."""
        known = self._answers.get(key)
        if known is None:
            raise NeedsFetch(key, fetch)
        succeeded, value = known
        if not succeeded:
            raise value
        return value

    async def make(self, need: NeedsFetch) -> None:
        """Make the fetch `need` asks for, now, and keep its answer or its error for the next run."""
        token = _DEFERRING.set(None)  # the fetch itself goes out, even if called from a deferring task
        try:
            self._answers[need.key] = (True, await need.fetch())
        except Exception as error:  # replayed where the handler made the call, which handles it as before
            self._answers[need.key] = (False, error)
        finally:
            _DEFERRING.reset(token)


_DEFERRING: ContextVar[DeferredAnswers | None] = ContextVar("deferring", default=None)


@contextmanager
def deferring(answers: DeferredAnswers) -> Iterator[None]:
    """Within this block (and the tasks it starts), fetches answer from `answers` or raise `NeedsFetch`."""
    token = _DEFERRING.set(answers)
    try:
        yield
    finally:
        _DEFERRING.reset(token)


def deferred_answers() -> DeferredAnswers | None:
    """The answers fetches must come from now, or None when they go out."""
    return _DEFERRING.get()


async def with_fetches_deferred(apply: Callable[[], Awaitable[T]], *, max_fetches: int) -> T:
    """`apply()` (which opens and commits its own transaction), run again after each fetch it asked for, each
    made with no transaction open; `TooManyFetches` once it has asked for more than `max_fetches`."""
    answers = DeferredAnswers()
    while True:
        try:
            with deferring(answers):
                return await apply()
        except NeedsFetch as need:  # its transaction was rolled back on the way out
            if len(answers) >= max_fetches:
                raise TooManyFetches(f"more than {max_fetches} documents had to be fetched") from None
            await answers.make(need)

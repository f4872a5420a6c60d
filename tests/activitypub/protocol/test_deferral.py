"""Deferred fetches: asked inside `deferring`, made outside it, replayed (answer or error) on the next run."""

from __future__ import annotations

import pytest

from activitypub.protocol.addresses import FetchError
from activitypub.protocol.deferral import (
    DeferredAnswers,
    NeedsFetch,
    TooManyFetches,
    deferred_answers,
    deferring,
    with_fetches_deferred,
)


async def test_a_fetch_is_asked_for_then_made_outside_then_answered() -> None:
    answers = DeferredAnswers()
    made: list[str] = []

    async def fetch() -> dict[str, str]:
        made.append("once")
        assert deferred_answers() is None  # the fetch itself goes out
        return {"id": "https://peer.example/notes/1"}

    with deferring(answers):
        assert deferred_answers() is answers
        with pytest.raises(NeedsFetch) as asked:
            answers.answer(("object", "https://peer.example/notes/1"), fetch)
    assert made == [] and deferred_answers() is None
    await answers.make(asked.value)
    with deferring(answers):
        again = answers.answer(("object", "https://peer.example/notes/1"), fetch)
    assert again == {"id": "https://peer.example/notes/1"} and made == ["once"] and len(answers) == 1


async def test_a_failed_fetch_fails_again_where_it_was_asked_for() -> None:
    answers = DeferredAnswers()

    async def fetch() -> None:
        raise FetchError("the peer answered 503")

    with pytest.raises(NeedsFetch) as asked:
        answers.answer("gone", fetch)
    await answers.make(asked.value)
    for _ in range(2):
        with pytest.raises(FetchError, match="503"):
            answers.answer("gone", fetch)


async def test_what_is_applied_runs_again_after_each_fetch_and_stops_at_its_bound() -> None:
    runs: list[list[str]] = []

    async def fetch_a() -> str:
        return "a"

    async def fetch_b() -> str:
        return "b"

    async def apply() -> str:
        answers = deferred_answers()
        assert answers is not None
        seen: list[str] = []
        runs.append(seen)
        seen.append(answers.answer("a", fetch_a))
        seen.append(answers.answer("b", fetch_b))
        return "".join(seen)

    assert await with_fetches_deferred(apply, max_fetches=2) == "ab"
    assert runs == [[], ["a"], ["a", "b"]]
    with pytest.raises(TooManyFetches, match="more than 1 documents"):
        await with_fetches_deferred(apply, max_fetches=1)

"""The background runner: periodic work, inside `forum serve` or in `forum worker` processes.

Federation registers its queues here later; today it prunes expired sessions and old cache rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


@dataclass
class Periodic:
    name: str
    every: float
    job: Job


class JobRunner:
    def __init__(self) -> None:
        self._periodic: list[Periodic] = []

    def every(self, seconds: float, name: str, job: Job) -> None:
        self._periodic.append(Periodic(name, seconds, job))

    async def run_once(self) -> None:
        """Run every job once, now (tests and `forum worker --once` use it)."""
        for periodic in self._periodic:
            await self._run(periodic)

    async def run(self) -> None:
        """Run each job at its interval until cancelled."""
        await asyncio.gather(*(self._loop(periodic) for periodic in self._periodic))

    async def _loop(self, periodic: Periodic) -> None:
        while True:
            await self._run(periodic)
            await asyncio.sleep(periodic.every)

    async def _run(self, periodic: Periodic) -> None:
        try:
            await periodic.job()
        except Exception:  # one failing job must not stop the others; it retries next round
            log.exception("background job %s failed", periodic.name)

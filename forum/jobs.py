"""The background runner: periodic work, inside `forum serve` or in `forum worker` processes.

Periodic jobs run at their interval; loops (federation's delivery and inbox workers) run for as long
as the runner does, restarted after a crash.
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


@dataclass
class Loop:
    name: str
    # Runs until cancelled; `once` does one round of its work (tests, `forum worker --once`).
    forever: Job
    once: Job


class JobRunner:
    def __init__(self) -> None:
        self._periodic: list[Periodic] = []
        self._loops: list[Loop] = []

    def every(self, seconds: float, name: str, job: Job) -> None:
        self._periodic.append(Periodic(name, seconds, job))

    def loop(self, name: str, forever: Job, once: Job) -> None:
        self._loops.append(Loop(name, forever, once))

    async def run_once(self) -> None:
        """Run every job once, now (tests and `forum worker --once` use it)."""
        for periodic in self._periodic:
            await self._run(periodic)
        for loop in self._loops:
            await self._run(Periodic(loop.name, 0, loop.once))

    async def run(self) -> None:
        """Run each job at its interval, and each loop, until cancelled."""
        await asyncio.gather(
            *(self._loop(periodic) for periodic in self._periodic),
            *(self._forever(loop) for loop in self._loops),
        )

    async def _forever(self, loop: Loop) -> None:
        while True:
            await self._run(Periodic(loop.name, 0, loop.forever))
            await asyncio.sleep(1)  # it crashed (and was logged): start it again

    async def _loop(self, periodic: Periodic) -> None:
        while True:
            await self._run(periodic)
            await asyncio.sleep(periodic.every)

    async def _run(self, periodic: Periodic) -> None:
        try:
            await periodic.job()
        except Exception:  # one failing job must not stop the others; it retries next round
            log.exception("background job %s failed", periodic.name)

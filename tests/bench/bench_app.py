"""The app the benchmark serves: the real forum plus two reference routes it is measured against.

`uvicorn tests.bench.bench_app:app_factory --factory --loop uvloop --http httptools`, with the settings
from the environment as `forum serve` reads them, and `FORUM_BENCH_THREAD_ID` naming the thread.

- `/bench/rendered`: the thread page rendered from a `ThreadPage` read once at start-up and kept in
  memory, through the same `page_state` and `thread_response` as `/t/{id}`: the member's page minus the
  database.
- `/bench/trivial`: a plain "ok", the floor of what the app and the server cost per request.
- `/bench/accepted` (POST): reads the body and answers `202`, what an inbox would answer had it nothing
  to check or keep: the floor the federation benchmark measures the inbox against.

With `FORUM_BENCH_PROFILE=PATH` (and pyinstrument installed), the process samples itself from start-up
to shutdown and writes pyinstrument's reports to PATH: the call tree, then the functions by their own
time; and the session beside it (PATH.pyisession, for `pyinstrument --load`).

These routes are never shipped to users: only this factory mounts them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from forum.app import create_app
from forum.config import load_settings
from forum.permissions import GUEST
from forum.services import reading
from forum.web.base import page_state
from forum.web.context import forum_context
from forum.web.pages import thread_response

THREAD_ENV = "FORUM_BENCH_THREAD_ID"
PROFILE_ENV = "FORUM_BENCH_PROFILE"
VIEW_KEY = "bench_view"


def app_factory() -> Starlette:
    """Called by uvicorn; reads the settings from the environment like `forum.server.app_factory`."""
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    thread_id = int(os.environ[THREAD_ENV])
    app = create_app(
        settings,
        run_worker=os.environ.get("FORUM_RUN_WORKER", "1") == "1",
        extra_routes=[
            Route("/bench/rendered", rendered),
            Route("/bench/trivial", trivial),
            Route("/bench/accepted", accepted, methods=["POST"]),
        ],
    )
    forum_lifespan = app.router.lifespan_context
    profile_path = os.environ.get(PROFILE_ENV)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with forum_lifespan(app):
            forum = app.state.forum
            # The thread sits in a public category, so a guest reads exactly what the member reads.
            async with forum.read() as session:
                forum.extra[VIEW_KEY] = await reading.thread_page(session, GUEST, thread_id, 1)
            if profile_path is None:
                yield
                return
            profiler = _profiler()
            profiler.start()
            try:
                yield
            finally:
                profiler.stop()
                _write_profile(profiler, Path(profile_path))

    app.router.lifespan_context = lifespan
    return app


async def rendered(request: Request) -> Response:
    state = await page_state(request)
    view: reading.ThreadPage = forum_context(request).extra[VIEW_KEY]
    return thread_response(request, state, view, {})


async def trivial(request: Request) -> Response:
    return PlainTextResponse("ok")


async def accepted(request: Request) -> Response:
    await request.body()
    return Response(status_code=202)


def _profiler() -> Any:
    # pyinstrument is a developer's tool, not a dependency of the project: imported only when asked for.
    pyinstrument = importlib.import_module("pyinstrument")
    return pyinstrument.Profiler(interval=0.0005, async_mode="disabled")


def _write_profile(profiler: Any, path: Path) -> None:
    tree = profiler.output_text(unicode=True, color=False, time="percent_of_total")
    flat = profiler.output_text(unicode=True, color=False, flat=True, time="percent_of_total")
    path.write_text(f"{tree}\n\nFunctions by own time\n{flat}")
    profiler.last_session.save(str(path.with_suffix(".pyisession")))

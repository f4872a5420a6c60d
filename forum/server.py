"""Running the forum: uvicorn (uvloop, httptools) for `forum serve`, the job loop for `forum worker`."""

from __future__ import annotations

import os

import uvicorn

from forum.config import Settings


def app_factory() -> object:
    """Called by uvicorn in each worker process; settings come from the environment again there."""
    from forum.app import create_app
    from forum.config import load_settings

    return create_app(load_settings(), run_worker=os.environ.get("FORUM_RUN_WORKER", "1") == "1")


def serve(settings: Settings, *, host: str, port: int, workers: int, run_worker: bool) -> None:
    # uvloop + httptools: with the plain asyncio loop and --workers, uvicorn leaves Nagle's
    # algorithm on and keep-alive answers wait ~40 ms (Kludex/uvicorn#3149).
    os.environ["FORUM_RUN_WORKER"] = "1" if run_worker else "0"
    uvicorn.run(
        "forum.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,  # the forum reads X-Forwarded-* itself, from trusted proxies only
        server_header=False,
    )


async def run_worker(settings: Settings, *, once: bool = False) -> None:
    from forum.app import build_context, build_jobs, federation_of

    forum = build_context(settings)
    try:
        jobs = build_jobs(forum)
        if once:
            await jobs.run_once()
        else:
            await jobs.run()
    finally:
        await federation_of(forum).aclose()
        await forum.engine.dispose()

"""Where a page's time goes.

`python -m tests.bench.profile [--posts 10000] [--database-url URL] [--seconds 5] [--no-sampling]`

First a breakdown, timed in this process without a profiler: the steps of the member's page
(`page_state`, the database read, the render from memory, the whole route) and the visitor's cached
page, each the median of a few hundred calls.

Then, with pyinstrument in the virtualenv (`pip install pyinstrument`; not a dependency of the
project), for each of the member's page and the visitor's page a fresh server process samples its main
thread from start-up to shutdown while the load generator loads that one page; the reports land in
`tests/bench/results/profile-{member,visitor}.txt` (call tree, then functions by own time). The
sampler slows Python code down several times; read its shares, not its timings.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from forum.app import create_app
from forum.config import Settings
from forum.services import reading
from forum.web import pages
from forum.web.base import page_state, render
from forum.web.context import forum_context
from tests.bench import generate
from tests.bench.load import measure
from tests.bench.run import RESULTS_DIR
from tests.bench.server import BASE_URL, BenchServer, member_cookie


def profile(database_url: str, seconds: int, connections: int, work_dir: Path) -> dict[str, Path]:
    made = asyncio.run(generate.stored(database_url))
    if made is None:
        raise SystemExit(f"{database_url} holds no generated data; run tests.bench.generate first")
    secret = secrets.token_urlsafe(32)
    cookie = member_cookie(database_url, secret, made.viewer, work_dir)
    reports = {}
    for page, headers in (("member", (f"Cookie: {cookie}",)), ("visitor", ())):
        path = RESULTS_DIR / f"profile-{page}.txt"
        server = BenchServer(
            f"profile-{page}", database_url, made.bench_thread_id, secret, work_dir, profile_path=path,
            log_dir=RESULTS_DIR,
        )  # fmt: skip
        with server:
            url = f"{server.origin}/t/{made.bench_thread_id}"
            result = measure(url, seconds=seconds, connections=connections, headers=headers)
            print(f"{page}'s page: {result.requests_per_second:,.0f} req/s while sampled", file=sys.stderr)
        reports[page] = path
    return reports


def breakdown(database_url: str, work_dir: Path, calls: int = 300) -> dict[str, tuple[float, float]]:
    """Median milliseconds (wall, main thread's CPU) of each step of the thread page, in-process."""
    made = asyncio.run(generate.stored(database_url))
    assert made is not None
    secret = secrets.token_urlsafe(32)
    cookie = member_cookie(database_url, secret, made.viewer, work_dir)
    settings = Settings(data_dir=work_dir, database_url=database_url, base_url=BASE_URL, secret_key=secret)
    path = f"/t/{made.bench_thread_id}"

    def request(app: Starlette, with_cookie: bool) -> Request:
        headers = [(b"host", b"127.0.0.1:8000")] + ([(b"cookie", cookie.encode())] if with_cookie else [])
        return Request({
            "type": "http", "app": app, "method": "GET", "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": headers, "state": {}, "path_params": {"thread_id": made.bench_thread_id},
            "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "root_path": "",
        })  # fmt: skip

    async def timed(step: Callable[[], Awaitable[object]]) -> tuple[float, float]:
        """(wall, this thread's CPU) in ms: the difference is waiting, e.g. for the database driver."""
        for _ in range(20):
            await step()
        walls, cpus = [], []
        for _ in range(calls):
            started, started_cpu = time.perf_counter(), time.thread_time()
            await step()
            walls.append((time.perf_counter() - started) * 1000)
            cpus.append((time.thread_time() - started_cpu) * 1000)
        return round(statistics.median(walls), 3), round(statistics.median(cpus), 3)

    async def run() -> dict[str, tuple[float, float]]:
        app = create_app(settings, run_worker=False)
        async with app.router.lifespan_context(app):
            forum = forum_context(request(app, True))
            state = await page_state(request(app, True))
            async with forum.read() as session:
                view = await reading.thread_page(session, state.viewer, made.bench_thread_id, 1)

            async def read() -> object:
                async with forum.read() as session:
                    return await reading.thread_page(session, state.viewer, made.bench_thread_id, 1)

            async def render_page() -> object:
                return render(request(app, True), state, "thread.html", {"view": view, "form": {}})

            async def member_route() -> Response:
                return await pages.thread(request(app, True))

            async def visitor_route() -> Response:
                return await pages.thread(request(app, False))

            return {
                "member: page_state (viewer cached)": await timed(lambda: page_state(request(app, True))),
                "member: database read (reading.thread_page)": await timed(read),
                "member: render from memory (base.render)": await timed(render_page),
                "member: whole route (pages.thread)": await timed(member_route),
                "visitor: whole route, cached page": await timed(visitor_route),
            }

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Profile the member's and the visitor's thread page.")
    parser.add_argument("--database-url", help="a database filled by tests.bench.generate (default: a new SQLite)")
    parser.add_argument("--posts", type=int, default=10_000, help="posts to generate when no URL is given")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-sampling", action="store_true", help="only the in-process breakdown")
    args = parser.parse_args(argv)
    RESULTS_DIR.mkdir(exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="jardin-profile-"))
    try:
        url = args.database_url
        if url is None:
            url = f"sqlite+aiosqlite:///{work_dir / 'forum.db'}"
            generate.generate(url, args.posts, progress=lambda line: print(line, file=sys.stderr))
        steps = breakdown(url, work_dir)
        reports = {} if args.no_sampling else profile(url, args.seconds, args.connections, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print("median ms per call, in-process:   wall   main-thread CPU")
    for step, (wall, cpu) in steps.items():
        print(f"  {step:<45} {wall:8.3f} {cpu:8.3f}")
    for page, path in reports.items():
        print(f"{page}'s page: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

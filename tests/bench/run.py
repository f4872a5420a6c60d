"""`make bench`: the figures of issue 2, each a ratio of two measurements taken in the same run.

For each database (SQLite, and PostgreSQL when FORUM_BENCH_DATABASE_URL or FORUM_TEST_DATABASE_URL
names a server), the generator fills a database of 10,000 posts and one of 1,000,000 (100,000 with
`--quick`); a server process (`tests.bench.server`) serves each, and wrk (or the asyncio client of
`tests.bench.load`) loads it over loopback from another process:

- member's page: `/t/{id}` (50 posts) with a member's session cookie, against `/bench/rendered`, the
  same page rendered from memory in the same process (goal >= 0.8);
- visitor's page: `/t/{id}` without a cookie, against `/bench/trivial` (goal >= 0.5), and the rate of
  `304` answers to a repeat visit that sends `If-None-Match`;
- the database path: the member's page on a server whose thread cache is off
  (`FORUM_THREAD_CACHE_ENTRIES=0`), so that every request reads the database, against `/bench/rendered`;
- scale: the member's page median latency on the large database over the small one, both with the
  thread cache off, since with it both would measure the cache (goal <= 1.5);
- many threads: every thread of the large database in turn, as a member and as a visitor, so that the
  caches fill as on a busy forum;
- peak memory: the servers' resident-memory high-water mark, after all that load (goal <= 150 MB).

The two routes of a pair are measured in turns (A, B, A, B…) after a warm-up of each, and the ratio
is taken between their medians, so the drift of a noisy machine touches both. The results go to
`tests/bench/results/latest.json`, and a Markdown table for the README to standard output.

On PostgreSQL the benchmark makes and owns its own databases on that server (`jardin_bench_<posts>`),
never the named one, and reuses them while the generator's version and size match (`--regenerate`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from forum import migrate
from forum.config import Settings
from forum.db import create_engine
from tests.bench import federation, generate
from tests.bench.load import LoadResult, measure, wrk_available
from tests.bench.server import BenchServer, member_cookie

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SMALL_POSTS = 10_000
LARGE_POSTS = 1_000_000
QUICK_LARGE_POSTS = 100_000
GOALS = {"member": 0.8, "visitor": 0.5, "scale": 1.5, "memory_mb": 150.0}


@dataclass(frozen=True)
class Plan:
    seconds: int
    warmup: int
    rounds: int
    connections: int
    large_posts: int
    tool: str
    databases: tuple[str, ...]
    data_dir: Path
    regenerate: bool


@dataclass(frozen=True)
class Target:
    label: str
    url: str
    headers: tuple[str, ...] = ()


@dataclass
class Comparison:
    """Rounds of A and B taken in turns; ratios between their medians."""

    a: Target
    b: Target
    a_results: list[LoadResult] = field(default_factory=list)
    b_results: list[LoadResult] = field(default_factory=list)

    @property
    def a_rps(self) -> float:
        return statistics.median(r.requests_per_second for r in self.a_results)

    @property
    def b_rps(self) -> float:
        return statistics.median(r.requests_per_second for r in self.b_results)

    @property
    def a_p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.a_results)

    @property
    def b_p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.b_results)

    @property
    def throughput_ratio(self) -> float:
        return self.a_rps / self.b_rps

    @property
    def latency_ratio(self) -> float:
        return self.a_p50 / self.b_p50

    @property
    def errors(self) -> int:
        return sum(r.errors for r in (*self.a_results, *self.b_results))

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": {"label": self.a.label, "url": self.a.url, "rounds": [r.as_dict() for r in self.a_results],
                  "median_rps": round(self.a_rps, 1), "median_p50_ms": round(self.a_p50, 3)},
            "b": {"label": self.b.label, "url": self.b.url, "rounds": [r.as_dict() for r in self.b_results],
                  "median_rps": round(self.b_rps, 1), "median_p50_ms": round(self.b_p50, 3)},
            "throughput_ratio": round(self.throughput_ratio, 3),
            "latency_ratio": round(self.latency_ratio, 3),
            "errors": self.errors,
        }  # fmt: skip


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def compare(a: Target, b: Target, plan: Plan) -> Comparison:
    log(f"  {a.label} vs {b.label}: warm-up {plan.warmup} s each, then {plan.rounds} x {plan.seconds} s each")
    for target in (a, b):
        _load(target, plan, plan.warmup)
    comparison = Comparison(a, b)
    for _ in range(plan.rounds):
        comparison.a_results.append(_load(target=a, plan=plan, seconds=plan.seconds))
        comparison.b_results.append(_load(target=b, plan=plan, seconds=plan.seconds))
        log(
            f"    {comparison.a_results[-1].requests_per_second:8.1f} req/s  vs  "
            f"{comparison.b_results[-1].requests_per_second:8.1f} req/s"
        )
    log(
        f"    medians {comparison.a_rps:.1f} / {comparison.b_rps:.1f} req/s = {comparison.throughput_ratio:.3f};"
        f" p50 {comparison.a_p50:.2f} / {comparison.b_p50:.2f} ms"
    )
    return comparison


def _load(target: Target, plan: Plan, seconds: int) -> LoadResult:
    return measure(target.url, seconds=seconds, connections=plan.connections, headers=target.headers, tool=plan.tool)


# The databases


def postgres_server_url() -> str | None:
    return os.environ.get("FORUM_BENCH_DATABASE_URL") or os.environ.get("FORUM_TEST_DATABASE_URL") or None


def database_url(kind: str, posts: int, plan: Plan) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{plan.data_dir / f'sqlite-{posts}.db'}"
    server = postgres_server_url()
    assert server is not None
    return make_url(server).set(database=f"jardin_bench_{posts}").render_as_string(hide_password=False)


async def _ensure_postgres_database(url: str) -> None:
    name = make_url(url).database
    server = postgres_server_url()
    assert server is not None and name is not None
    engine = create_engine(server, pool_size=1)
    try:
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            exists = await autocommit.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if not exists:
                await autocommit.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


def prepare(kind: str, posts: int, plan: Plan) -> tuple[str, generate.Generated, bool]:
    """A database of `posts` posts: (url, what the generator made, whether it was reused)."""
    url = database_url(kind, posts, plan)
    if kind == "postgresql":
        asyncio.run(_ensure_postgres_database(url))
    if not plan.regenerate:
        existing = asyncio.run(generate.stored(url))
        if existing is not None and existing.posts == posts:
            log(f"  reusing the {posts:,}-post {kind} database (generated in {existing.seconds:.1f} s)")
            migrate.upgrade(url)  # as `forum serve` would, should the schema have moved on since
            return url, existing, True
    log(f"  generating {posts:,} posts on {kind}")
    made = generate.generate(url, posts, reset=True, progress=lambda line: log(f"    {line}"))
    return url, made, False


# The measurements


def check_pages(server: BenchServer, thread_id: int, cookie: str) -> dict[str, Any]:
    """What each measured route answers, checked once before loading it: a wrong page is no benchmark."""
    member = server.get(f"/t/{thread_id}", {"Cookie": cookie})
    rendered = server.get("/bench/rendered", {"Cookie": cookie})
    visitor = server.get(f"/t/{thread_id}")
    visitor_again = server.get(f"/t/{thread_id}")
    problems = []
    for name, (status, _headers, body) in (("member", member), ("rendered", rendered), ("visitor", visitor)):
        if status != 200:
            problems.append(f"{name} page answered {status}")
        elif body.count(b'<article class="post') != generate.BENCH_THREAD_POSTS:
            problems.append(f"{name} page does not show {generate.BENCH_THREAD_POSTS} posts")
    if b'action="/t/' not in member[2] or b'action="/t/' not in rendered[2]:
        problems.append("the member's page has no reply form: the cookie did not log in")
    if b'action="/t/' in visitor[2]:
        problems.append("the visitor's page shows a reply form")
    if problems:
        raise RuntimeError(f"{server.name}: " + "; ".join(problems))
    return {
        "member_page_bytes": len(member[2]),
        "rendered_page_bytes": len(rendered[2]),
        "visitor_page_bytes": len(visitor[2]),
        "visitor_etag": visitor_again[1].get("etag"),
        "visitor_cache_control": visitor_again[1].get("cache-control"),
        "member_cache_control": member[1].get("cache-control"),
        "visitor_sets_cookie": "set-cookie" in visitor_again[1],
    }


def revalidation(server: BenchServer, thread_id: int, plan: Plan) -> dict[str, Any]:
    """A repeat visit sends the ETag back: how many answers are 304, and how fast they come."""
    path = f"/t/{thread_id}"
    _status, headers, _body = server.get(path)
    etag = headers.get("etag")
    if etag is None:
        log("  no ETag on the visitor's page: no revalidation")
        return {"etag": None, "rate_304": 0.0}
    stale_status = server.get(path, {"If-None-Match": '"not-the-etag"'})[0]
    counted = measure(
        f"{server.origin}{path}", seconds=2, connections=4, headers=(f"If-None-Match: {etag}",),
        count_statuses=True,
    )  # fmt: skip
    rate = counted.statuses.get("304", 0) / counted.requests if counted.requests else 0.0
    result: dict[str, Any] = {
        "etag": etag, "rate_304": round(rate, 4), "requests": counted.requests, "statuses": counted.statuses,
        "status_for_other_etag": stale_status,
    }  # fmt: skip
    if plan.tool != "python" and wrk_available():
        fast = measure(
            f"{server.origin}{path}", seconds=plan.seconds, connections=plan.connections,
            headers=(f"If-None-Match: {etag}",), tool=plan.tool,
        )  # fmt: skip
        result["rps_304"] = fast.requests_per_second
    log(f"  If-None-Match: {rate:.1%} of {counted.requests} answers were 304 (another ETag: {stale_status})")
    return result


def bench_database(kind: str, plan: Plan, work_dir: Path) -> dict[str, Any]:
    log(f"\n== {kind}")
    small_url, small, small_reused = prepare(kind, SMALL_POSTS, plan)
    large_url, large, large_reused = prepare(kind, plan.large_posts, plan)
    secret = secrets.token_urlsafe(32)

    def server(name: str, url: str, made: generate.Generated, env: dict[str, str] | None = None) -> BenchServer:
        return BenchServer(
            f"{kind}-{name}", url, made.bench_thread_id, secret, work_dir, log_dir=RESULTS_DIR, env=env or {}
        )

    # Every request of the database-path servers reads the thread from the database.
    no_thread_cache = {"FORUM_THREAD_CACHE_ENTRIES": "0"}
    servers = {
        "small": server(f"{SMALL_POSTS}", small_url, small),
        "large": server(f"{plan.large_posts}", large_url, large),
        "small_db": server(f"{SMALL_POSTS}-db-path", small_url, small, no_thread_cache),
        "large_db": server(f"{plan.large_posts}-db-path", large_url, large, no_thread_cache),
    }
    with contextlib.ExitStack() as stack:
        for running in servers.values():
            stack.enter_context(running)
        small_cookie = member_cookie(small_url, secret, small.viewer, work_dir)
        large_cookie = member_cookie(large_url, secret, large.viewer, work_dir)
        pages = check_pages(servers["small"], small.bench_thread_id, small_cookie)
        check_pages(servers["large"], large.bench_thread_id, large_cookie)
        check_pages(servers["small_db"], small.bench_thread_id, small_cookie)
        check_pages(servers["large_db"], large.bench_thread_id, large_cookie)
        log(f"  pages: member {pages['member_page_bytes']:,} bytes, visitor {pages['visitor_page_bytes']:,} bytes")

        def member_page(key: str, label: str) -> Target:
            running, made = servers[key], small if key.startswith("small") else large
            cookie = small_cookie if key.startswith("small") else large_cookie
            return Target(label, f"{running.origin}/t/{made.bench_thread_id}", (f"Cookie: {cookie}",))

        def rendered(key: str) -> Target:
            cookie = small_cookie if key.startswith("small") else large_cookie
            return Target("in-memory render", f"{servers[key].origin}/bench/rendered", (f"Cookie: {cookie}",))

        small_origin = servers["small"].origin
        member = compare(member_page("small", f"member's page ({SMALL_POSTS:,} posts)"), rendered("small"), plan)
        visitor = compare(
            Target("visitor's page", f"{small_origin}/t/{small.bench_thread_id}"),
            Target("trivial route", f"{small_origin}/bench/trivial"),
            plan,
        )
        etag = revalidation(servers["small"], small.bench_thread_id, plan)
        database_path = compare(member_page("small_db", "member's page, thread cache off"), rendered("small_db"), plan)
        scale = compare(
            member_page("large_db", f"member's page, thread cache off ({plan.large_posts:,} posts)"),
            member_page("small_db", f"member's page, thread cache off ({SMALL_POSTS:,} posts)"),
            plan,
        )
        sweep = many_threads(servers["large"], large, large_cookie, plan)
        memory = {running.name: running.peak_memory_mb() for running in servers.values()}
    log("  peak memory: " + ", ".join(f"{name} {mb:.1f} MB" for name, mb in memory.items()))
    return {
        "generated": {
            str(SMALL_POSTS): _generated(small, small_reused),
            str(plan.large_posts): _generated(large, large_reused),
        },
        "thread_cache_setting": "thread_cache_entries" in Settings.__dataclass_fields__,
        "pages": pages,
        "member": member.as_dict(),
        "visitor": visitor.as_dict(),
        "revalidation": etag,
        "database_path": database_path.as_dict(),
        "scale": scale.as_dict(),
        "many_threads": sweep,
        "peak_memory_mb": {name: round(mb, 1) for name, mb in memory.items()},
    }


def many_threads(server: BenchServer, made: generate.Generated, cookie: str, plan: Plan) -> dict[str, Any]:
    """Members, then visitors, reading every thread in turn: the caches fill up as on a busy forum, and
    the server's memory peaks."""
    paths = [f"/t/{n}" for n in range(1, made.threads + 1)]
    seconds = plan.seconds * 2
    log(f"  every one of the {made.threads:,} threads in turn, {seconds} s as a member, then as a visitor")
    found: dict[str, Any] = {}
    for who, headers in (("member", (f"Cookie: {cookie}",)), ("visitor", ())):
        result = measure(
            f"{server.origin}/", seconds=seconds, connections=plan.connections, headers=headers,
            tool=plan.tool, paths=paths,
        )  # fmt: skip
        found[who] = result.as_dict()
        log(f"    {who}: {result.requests_per_second:,.1f} req/s, p50 {result.p50_ms:.1f} ms, errors {result.errors}")
    found["peak_memory_mb"] = round(server.peak_memory_mb(), 1)
    return found


def bench_federation(
    kind: str, plan: Plan, federation_plan: federation.FederationPlan, work_dir: Path
) -> dict[str, Any]:
    """The federation figures on `kind`, on a database of their own (they write to it)."""
    if kind == "postgresql" and postgres_server_url() is None:
        return {"skipped": "set FORUM_BENCH_DATABASE_URL or FORUM_TEST_DATABASE_URL to a PostgreSQL server"}
    if kind == "postgresql":
        url = make_url(database_url(kind, 0, plan)).set(database="jardin_bench_federation")
        url_text = url.render_as_string(hide_password=False)
        asyncio.run(_ensure_postgres_database(url_text))
    else:
        url_text = f"sqlite+aiosqlite:///{plan.data_dir / 'sqlite-federation.db'}"
    try:
        return federation.bench_federation(kind, url_text, federation_plan, work_dir, RESULTS_DIR)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        log(f"\n== federation on {kind}: failed: {error}")
        return {"skipped": f"failed: {error}"}


def _generated(made: generate.Generated, reused: bool) -> dict[str, Any]:
    return {**asdict(made), "rows_per_second": round(made.rows_per_second), "reused": reused}


# The report


def markdown(results: dict[str, Any]) -> str:
    databases = [name for name, found in results["databases"].items() if "skipped" not in found]
    if not databases:
        return "No database was measured."
    large = results["plan"]["large_posts"]
    header = ["figure", *(_TITLES[name] for name in databases), "goal"]
    rows: list[list[str]] = []

    def row(label: str, cell: Callable[[dict[str, Any]], str], goal: str) -> None:
        rows.append([label, *(cell(results["databases"][name]) for name in databases), goal])

    row(
        "Member's page / same page rendered from memory",
        lambda d: (
            _ratio(d["member"]["throughput_ratio"], GOALS["member"], ">=")
            + f" ({d['member']['a']['median_rps']:,.0f} / {d['member']['b']['median_rps']:,.0f} req/s)"
        ),
        f"≥ {GOALS['member']}",
    )
    row(
        "Visitor's page / trivial route",
        lambda d: (
            _ratio(d["visitor"]["throughput_ratio"], GOALS["visitor"], ">=")
            + f" ({d['visitor']['a']['median_rps']:,.0f} / {d['visitor']['b']['median_rps']:,.0f} req/s)"
        ),
        f"≥ {GOALS['visitor']}",
    )
    row(
        "Repeat visit with `If-None-Match`: answered `304`",
        lambda d: (
            f"{d['revalidation'].get('rate_304', 0):.0%}"
            + (f" ({d['revalidation']['rps_304']:,.0f} req/s)" if "rps_304" in d["revalidation"] else "")
        ),
        "100%",
    )
    row(
        "Member's page with the thread cache off (database read every time) / rendered from memory",
        lambda d: (
            f"{d['database_path']['throughput_ratio']:.2f}"
            + f" ({d['database_path']['a']['median_rps']:,.0f} / {d['database_path']['b']['median_rps']:,.0f} req/s)"
        ),
        "—",
    )
    row(
        f"Member's page median latency, {large:,} / {SMALL_POSTS:,} posts (thread cache off)",
        lambda d: (
            _ratio(d["scale"]["latency_ratio"], GOALS["scale"], "<=")
            + f" ({d['scale']['a']['median_p50_ms']:.1f} / {d['scale']['b']['median_p50_ms']:.1f} ms)"
        ),
        f"≤ {GOALS['scale']}",
    )
    row(
        f"Every thread of the {large:,}-post forum in turn: member / visitor",
        lambda d: (
            f"{d['many_threads']['member']['requests_per_second']:,.0f}"
            f" / {d['many_threads']['visitor']['requests_per_second']:,.0f} req/s"
        ),
        "—",
    )
    row(
        "Peak memory of one server process (VmHWM), after all of the above",
        lambda d: _ratio(max(d["peak_memory_mb"].values()), GOALS["memory_mb"], "<=", " MB", 0),
        f"≤ {GOALS['memory_mb']:.0f} MB",
    )
    row(
        f"Generator: {large:,} posts",
        lambda d: _generation(d["generated"][str(large)]),
        "a few minutes",
    )
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    plan = results["plan"]
    machine = results["machine"]
    lines.append("")
    lines.append(
        f"{machine['cpus']} cores, load average {machine['load_before']} before and {machine['load_after']} after;"
        f" one server process (uvicorn, uvloop, httptools); {results['load_generator']}, {plan['connections']}"
        f" connections, {plan['rounds']} rounds of {plan['seconds']} s per route taken in turns after"
        f" {plan['warmup']} s of warm-up; medians. Thread of {generate.BENCH_THREAD_POSTS} posts,"
        f" member's page {_first(results, 'member_page_bytes'):,} bytes."
        f" `{results['command']}`, {results['started'][:10]}."
    )
    for name, found in results["databases"].items():
        if "skipped" in found:
            lines.append(f"{_TITLES[name]}: skipped ({found['skipped']}).")
    return "\n".join(lines)


_TITLES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _ratio(value: float, goal: float, sense: str, unit: str = "", digits: int = 2) -> str:
    met = value >= goal if sense == ">=" else value <= goal
    return f"{value:.{digits}f}{unit} {'✓' if met else '✗'}"


def _generation(made: dict[str, Any]) -> str:
    return f"{made['seconds']:.0f} s, {made['rows_per_second']:,} rows/s" + (" (reused)" if made["reused"] else "")


def _first(results: dict[str, Any], key: str) -> int:
    for found in results["databases"].values():
        if "pages" in found:
            return int(found["pages"][key])
    return 0


def _load_generator(tool: str) -> str:
    if tool == "python" or (tool == "auto" and not wrk_available()):
        return "asyncio client (tests.bench.load)"
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    version = (done.stdout or done.stderr).split()[1] if (done.stdout or done.stderr) else "?"
    return f"wrk {version} (-t1)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The benchmark of issue 2 (make bench).")
    parser.add_argument("--quick", action="store_true", help=f"shorter runs, {QUICK_LARGE_POSTS:,} posts for scale")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--seconds", type=int, help="per measurement (default 5, --quick 2)")
    parser.add_argument("--rounds", type=int, help="measurements per route (default 3, --quick 2)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--large-posts", type=int, help="posts of the large database")
    parser.add_argument("--data-dir", type=Path, help="keep the SQLite databases here and reuse them")
    parser.add_argument("--regenerate", action="store_true", help="generate even when a database matches")
    parser.add_argument("--federation-only", action="store_true", help="only the federation figures")
    parser.add_argument("--no-federation", action="store_true", help="skip the federation figures")
    parser.add_argument(
        "--federation-parts", default=",".join(federation.PARTS), help=f"comma-separated: {','.join(federation.PARTS)}"
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="jardin-bench-")) if temporary else args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        seconds=args.seconds or (2 if args.quick else 5),
        warmup=1 if args.quick else 2,
        rounds=args.rounds or (2 if args.quick else 3),
        connections=args.connections,
        large_posts=args.large_posts or (QUICK_LARGE_POSTS if args.quick else LARGE_POSTS),
        tool=args.loadgen,
        databases=(args.only,) if args.only else ("sqlite", "postgresql"),
        data_dir=data_dir,
        regenerate=args.regenerate,
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "command": "python -m tests.bench.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())},
        "load_generator": _load_generator(plan.tool),
        "plan": {"seconds": plan.seconds, "warmup": plan.warmup, "rounds": plan.rounds,
                 "connections": plan.connections, "small_posts": SMALL_POSTS, "large_posts": plan.large_posts},
        "goals": GOALS,
        "databases": {},
    }  # fmt: skip
    log(f"load generator: {results['load_generator']}; work files in {data_dir}")
    federation_plan = federation.default_plan(
        args.quick, args.seconds, args.rounds, args.connections, args.loadgen, tuple(args.federation_parts.split(","))
    )
    if not args.no_federation:
        results["federation_plan"] = asdict(federation_plan)
        results["federation_goals"] = federation.GOALS
        results["federation"] = {}
    try:
        for kind in plan.databases:
            if args.federation_only:
                break
            if kind == "postgresql" and postgres_server_url() is None:
                reason = "set FORUM_BENCH_DATABASE_URL or FORUM_TEST_DATABASE_URL to a PostgreSQL server"
                log(f"\n== postgresql: skipped ({reason})")
                results["databases"][kind] = {"skipped": reason}
                continue
            try:
                results["databases"][kind] = bench_database(kind, plan, data_dir)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
                log(f"\n== {kind}: failed: {error}")
                results["databases"][kind] = {"skipped": f"failed: {error}"}
        for kind in () if args.no_federation else plan.databases:
            results["federation"][kind] = bench_federation(kind, plan, federation_plan, data_dir)
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    results["machine"]["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["seconds"] = round(time.monotonic() - started, 1)
    # A federation-only run keeps the issue-2 figures of the last full run.
    stem = "federation" if args.federation_only else "latest"
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = "" if args.federation_only else markdown(results)
    if "federation" in results:
        table += ("\n\n" if table else "") + federation.markdown(results["federation"])
    (RESULTS_DIR / f"{stem}.md").write_text(table + "\n")
    log(f"\ndone in {results['seconds']:.0f} s; results in {RESULTS_DIR / f'{stem}.json'}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Loading a URL for a fixed time from another process: wrk when installed, else an asyncio client.

`measure()` runs `wrk -t1 -cN -dSs --latency` and parses its report. Without wrk it runs this module
(`python -m tests.bench.load URL …`) in a child process: N HTTP/1.1 keep-alive connections on raw
asyncio streams, each sending the next request as soon as the answer is read, until the time is up.
Both report requests per second, latency percentiles and the answers that were not 2xx or 3xx; the
asyncio client also counts answers by status (the benchmark uses that for the rate of 304s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

PERCENTILES = (50, 75, 90, 99)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m)\b"


@dataclass(frozen=True)
class LoadResult:
    """One measurement: `requests` answered in `seconds`; latencies in milliseconds."""

    tool: str
    requests: int
    seconds: float
    requests_per_second: float
    latency_ms: dict[str, float]
    errors: int
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def p50_ms(self) -> float:
        return self.latency_ms["p50"]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def measure(
    url: str,
    *,
    seconds: int,
    connections: int = 16,
    headers: Sequence[str] = (),
    tool: str = "auto",
    count_statuses: bool = False,
    paths: Sequence[str] = (),
) -> LoadResult:
    """Load `url` for `seconds` from another process. `tool` is "wrk", "python" or "auto" (wrk if installed);
    `count_statuses` asks for the asyncio client, which counts answers by status. With `paths`, the
    requests go to those paths of `url`'s origin in turn instead of to `url`."""
    use_wrk = tool == "wrk" or (tool == "auto" and wrk_available() and not count_statuses)
    with tempfile.TemporaryDirectory(prefix="jardin-load-") as scratch:
        paths_file = None
        if paths:
            paths_file = Path(scratch) / "paths.txt"
            paths_file.write_text("\n".join(paths) + "\n")
        if use_wrk:
            return _run_wrk(url, seconds, connections, headers, paths_file)
        command = [sys.executable, "-m", "tests.bench.load", url, "--seconds", str(seconds),
                   "--connections", str(connections)]  # fmt: skip
        for header in headers:
            command += ["--header", header]
        if paths_file is not None:
            command += ["--paths-file", str(paths_file)]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    data = json.loads(done.stdout)
    return LoadResult(**data)


# Each request takes the next line of the paths file; wrk.format adds the -H headers.
_WRK_PATHS_SCRIPT = """
local paths = {}
for line in io.lines(%s) do paths[#paths + 1] = line end
local next_index = 0
request = function()
  next_index = next_index %% #paths + 1
  return wrk.format(nil, paths[next_index])
end
"""


def _run_wrk(url: str, seconds: int, connections: int, headers: Sequence[str], paths_file: Path | None) -> LoadResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for header in headers:
        command += ["-H", header]
    if paths_file is not None:
        script = paths_file.with_suffix(".lua")
        script.write_text(_WRK_PATHS_SCRIPT % json.dumps(str(paths_file)))
        command += ["--script", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    return parse_wrk(done.stdout)


def parse_wrk(report: str) -> LoadResult:
    """The figures of a `wrk --latency` report."""
    latencies: dict[str, float] = {}
    for percent in PERCENTILES:
        match = re.search(rf"^\s+{percent}%\s+{_DURATION}", report, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {percent}% latency in wrk's report:\n{report}")
        latencies[f"p{percent}"] = float(match.group(1)) * _UNITS[match.group(2)]
    totals = re.search(rf"(\d+) requests in {_DURATION}", report)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", report)
    if totals is None or rate is None:
        raise ValueError(f"no totals in wrk's report:\n{report}")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    if non_2xx:
        errors += int(non_2xx.group(1))
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report)
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    return LoadResult(
        tool="wrk",
        requests=int(totals.group(1)),
        seconds=float(totals.group(2)) * _UNITS[totals.group(3)] / 1000,
        requests_per_second=float(rate.group(1)),
        latency_ms=latencies,
        errors=errors,
    )


async def run_client(
    url: str, seconds: float, connections: int, headers: Sequence[str], paths: Sequence[str] = ()
) -> LoadResult:
    """The fallback load generator: `connections` keep-alive connections for `seconds`, asking for
    `url`, or for each of `paths` in turn."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        "\r\n".join([f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", *headers, "", ""]).encode("latin-1")
        for path in (paths or [(parts.path or "/") + (f"?{parts.query}" if parts.query else "")])
    ]
    sent_count = 0
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + seconds

    async def connection() -> None:
        nonlocal errors, sent_count
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while loop.time() < deadline:
                sent = time.perf_counter()
                writer.write(requests[sent_count % len(requests)])
                sent_count += 1
                try:
                    status, keep_alive = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    errors += 1
                    status, keep_alive = 0, False
                if status:
                    latencies.append((time.perf_counter() - sent) * 1000)
                    statuses[status] += 1
                    if status >= 400:
                        errors += 1
                if not keep_alive:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = loop.time() - started
    latencies.sort()
    return LoadResult(
        tool="python",
        requests=len(latencies),
        seconds=round(elapsed, 3),
        requests_per_second=round(len(latencies) / elapsed, 2),
        latency_ms={f"p{p}": round(_percentile(latencies, p), 3) for p in PERCENTILES},
        errors=errors,
        statuses={str(status): count for status, count in sorted(statuses.items())},
    )


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response off the connection; (status, whether the connection stays open)."""
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    status = int(status_line.split()[1])
    length: int | None = None
    chunked = False
    keep_alive = True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            keep_alive = value != b"close"
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep_alive


def _percentile(ordered: list[float], percent: int) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return ordered[index]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load a URL with keep-alive connections; print JSON.")
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--paths-file", type=Path, help="ask for these paths (one a line) in turn")
    args = parser.parse_args(argv)
    paths = args.paths_file.read_text().split() if args.paths_file else []
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run_client(args.url, args.seconds, args.connections, args.header, paths))
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

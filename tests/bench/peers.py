"""The other side of the federation benchmarks: receivers that stand for many remote instances, and a
sender that posts pre-signed activities to an inbox. Each runs in its own process.

`python -m tests.bench.peers receive --host 127.0.0.2 --ports 1000`: binds that many listening sockets
on `host` (ports chosen by the kernel), prints them as one JSON line, and answers every request on them
`202` with an empty body, counting requests per port. It also listens on 127.0.0.1 for `GET /counts`,
which answers the counts as JSON. Nothing is parsed beyond what HTTP/1.1 keep-alive needs: a receiver
must cost the machine as little as possible.

`python -m tests.bench.peers send --port P --requests FILE --connections N`: sends every raw HTTP
request of FILE (each prefixed by its length, 4 bytes big-endian) once, over N keep-alive connections
to 127.0.0.1:P, and prints one JSON line: how many were answered, by status, and the wall-clock times
of the first send and the last answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import uvloop

_ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


class _Receiver(asyncio.Protocol):
    """One connection: answers each complete request with 202 and counts it for its port."""

    def __init__(self, counts: Counter[int]) -> None:
        self._counts = counts
        self._buffer = b""
        self._port = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._port = transport.get_extra_info("sockname")[1]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self._buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            self._counts[self._port] += 1
            assert self._transport is not None
            self._transport.write(_ACCEPTED)


class _Control(asyncio.Protocol):
    def __init__(self, counts: Counter[int]) -> None:
        self._counts = counts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" not in data:
            return
        body = json.dumps({str(port): count for port, count in self._counts.items()}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._transport.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        self._transport.close()


async def receive(host: str, ports: int) -> None:
    loop = asyncio.get_running_loop()
    counts: Counter[int] = Counter()
    servers = [await loop.create_server(lambda: _Receiver(counts), host, 0, backlog=256) for _ in range(ports)]
    control = await loop.create_server(lambda: _Control(counts), "127.0.0.1", 0)
    bound = [server.sockets[0].getsockname()[1] for server in servers]
    print(json.dumps({"ports": bound, "control": control.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.Event().wait()  # until the benchmark terminates this process


def read_requests(path: Path) -> list[bytes]:
    data = path.read_bytes()
    requests, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        requests.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return requests


def write_requests(path: Path, requests: Sequence[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in requests))


async def send(port: int, requests: list[bytes], connections: int, timeout: float) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    pending = iter(requests)
    started = time.time()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in pending:
                writer.write(request)
                statuses[await _status(reader)] += 1
        finally:
            writer.close()

    try:
        await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(connections))), timeout)
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as error:
        statuses[0] += 1
        print(f"sender stopped: {type(error).__name__}: {error}", file=sys.stderr)
    finished = time.time()
    return {
        "requests": sum(statuses.values()),
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "started": started,
        "finished": finished,
        "seconds": round(finished - started, 4),
    }


async def _status(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise asyncio.IncompleteReadError(b"", None)
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(status_line.split()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Receivers and sender of the federation benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True)
    receiving = commands.add_parser("receive")
    receiving.add_argument("--host", required=True)
    receiving.add_argument("--ports", type=int, required=True)
    sending = commands.add_parser("send")
    sending.add_argument("--port", type=int, required=True)
    sending.add_argument("--requests", type=Path, required=True)
    sending.add_argument("--connections", type=int, default=16)
    sending.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        if args.command == "receive":
            runner.run(receive(args.host, args.ports))
            return 0
        result = runner.run(send(args.port, read_requests(args.requests), args.connections, args.timeout))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

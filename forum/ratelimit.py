"""Rate limits: sliding-window counters per (bucket, key), kept in the process.

Keys are account names, token ids or client addresses; IPv6 addresses count per /64, since one
host usually holds a whole /64.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable

from forum.errors import RateLimited


@functools.lru_cache(maxsize=4096)  # a busy peer's address is met on every one of its requests
def address_key(address: str) -> str:
    """The unit a client address is counted in: the address for IPv4, its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class RateLimiter:
    """Counts attempts; `hit` raises RateLimited with a retry delay once a limit is reached."""

    MAX_KEYS = 100_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def hit(self, bucket: str, key: str, limit: int, window: float, message: str) -> None:
        now = self._clock()
        hits = self._hits.get((bucket, key))
        if hits is None:
            if len(self._hits) >= self.MAX_KEYS:
                self._sweep(now, window)
            hits = self._hits[(bucket, key)] = deque()
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            raise RateLimited(message, retry_after=max(1, math.ceil(hits[0] + window - now)))
        hits.append(now)

    def reset(self, bucket: str, key: str) -> None:
        self._hits.pop((bucket, key), None)

    def _sweep(self, now: float, window: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - window]:
            del self._hits[key]

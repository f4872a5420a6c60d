"""One retry policy for every federation queue: exponential delays adding up to about three days.

Mastodon retries 16 times over 2 to 3 days; the delays here (1 min doubling to a 12 h cap, with jitter so
a peer back from an outage is not hit by every queued row at once) give up after ~3 days.
"""

from __future__ import annotations

import random
from datetime import timedelta

FIRST_DELAY = 60.0
MAX_DELAY = 12 * 3600.0
GIVE_UP_AFTER = timedelta(days=3)
# A Retry-After larger than this is read as "a day" rather than trusted blindly.
MAX_RETRY_AFTER = 24 * 3600.0


def next_delay(attempts: int, retry_after: float | None = None, *, jitter: float = 0.1) -> float:
    """Seconds to wait before attempt number `attempts + 1` (`attempts` have failed so far)."""
    delay: float = min(FIRST_DELAY * 2.0 ** max(attempts - 1, 0), MAX_DELAY)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay * (1 + random.uniform(0, jitter))


def total_delay(attempts: int) -> float:
    """Seconds waited before the given attempt, without jitter (tests and docs use it)."""
    return sum(min(FIRST_DELAY * 2.0 ** max(n - 1, 0), MAX_DELAY) for n in range(1, attempts + 1))


def attempts_within(window: timedelta = GIVE_UP_AFTER) -> int:
    """How many attempts fit in the window: the last one is made at most `window` after the first."""
    count = 0
    while total_delay(count + 1) <= window.total_seconds():
        count += 1
    return count + 1

"""The API's rate limits: per client address (IPv6 per /64) and per token, plus the posting limit
the pages apply, so a member cannot post faster through the API than through a form."""

from __future__ import annotations

from starlette.requests import Request

from forum.ratelimit import address_key
from forum.web.api.auth import Caller
from forum.web.base import address
from forum.web.context import forum_context


def limit_address(request: Request) -> None:
    """Counted before the token is checked, so guessing tokens is limited too."""
    forum = forum_context(request)
    limits = forum.settings.rate_limits
    key = address_key(address(request))
    message = (
        f"Too many API requests from your network: at most {limits.api_per_address} every "
        f"{_duration(limits.api_window)}. Wait for the time in Retry-After, then try again."
    )
    forum.limiter.hit("api", f"address:{key}", limits.api_per_address, limits.api_window, message)


def limit_token(request: Request, caller: Caller) -> None:
    if caller.token is None:
        return
    forum = forum_context(request)
    limits = forum.settings.rate_limits
    message = (
        f"Too many API requests with this token: at most {limits.api_per_token} every "
        f"{_duration(limits.api_window)}. Wait for the time in Retry-After, then try again."
    )
    forum.limiter.hit("api", f"token:{caller.token.id}", limits.api_per_token, limits.api_window, message)


def limit_posting(request: Request, caller: Caller) -> None:
    """The same bucket and key as the new-thread and reply forms (forum.web.posting)."""
    forum = forum_context(request)
    limits = forum.settings.rate_limits
    message = "You are posting too fast. Wait for the time in Retry-After, then try again."
    forum.limiter.hit("post", f"member:{caller.viewer.username}", limits.post_per_account, limits.post_window, message)


def limit_voting(request: Request, caller: Caller) -> None:
    """The same bucket and key as the vote buttons of the thread page (forum.web.votes)."""
    forum = forum_context(request)
    limits = forum.settings.rate_limits
    message = "You are voting too fast. Wait for the time in Retry-After, then try again."
    forum.limiter.hit("vote", f"member:{caller.viewer.username}", limits.vote_per_account, limits.vote_window, message)


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{int(seconds // 60)} minutes"
    return f"{seconds:g} seconds"

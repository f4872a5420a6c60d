"""Domain errors: services raise them, the web, API and CLI turn them into messages."""

from __future__ import annotations


class ForumError(Exception):
    """Something the caller asked for cannot be done; `message` says why, for a person to read."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ForumError):
    status = 422


class Conflict(ForumError):
    status = 409


class NotFound(ForumError):
    status = 404


class Forbidden(ForumError):
    status = 403


class NotAuthenticated(ForumError):
    status = 401


class RateLimited(ForumError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

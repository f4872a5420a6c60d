"""Domain errors: services raise them, the web, API and CLI turn them into messages."""

from __future__ import annotations

from collections.abc import Callable


def N_(message: str) -> str:
    """Marks a message for translation where it is written; it is translated where it is shown."""
    return message


class ForumError(Exception):
    """Something the caller asked for cannot be done; `message` says why, for a person to read.

    The message is an English template with `%(name)s` placeholders filled from `params`, so the
    page that shows it can translate the template first (`localized`).
    """

    status = 400

    def __init__(self, message: str, *, field: str | None = None, **params: object) -> None:
        self.template = message
        self.params = params
        self.message = message % params if params else message
        super().__init__(self.message)
        self.field = field

    def localized(self, gettext: Callable[[str], str]) -> str:
        translated = gettext(self.template)
        return translated % self.params if self.params else translated


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

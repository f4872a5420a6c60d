"""Routes of the JSON API v1 (filled in by forum.web.api.v1)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []

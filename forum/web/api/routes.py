"""Routes of the JSON API (mounted by forum.app); unknown paths under /api/ fall through to the
app's 404 handler, which answers problem+json there."""

from __future__ import annotations

from starlette.routing import BaseRoute

from forum.web.api import v1

routes: list[BaseRoute] = [*v1.routes]

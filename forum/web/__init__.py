"""Starlette routes for members and visitors: pages, forms, sessions, the JSON API, templating."""

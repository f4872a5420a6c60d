"""Themes and templates: the only way Python reaches `themes/`.

A theme is a folder with `theme.toml` (`name`, `parent`), `templates/` and `static/`. Its templates
override its parent's and inherit the rest; so do its static files. A theme reaches an ancestor's own
version of a template it overrides by prefixing the ancestor's name: its `base.html` may say
`{% extends "default:base.html" %}` and change one block.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from babel.dates import format_datetime, format_timedelta
from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, select_autoescape

from forum import i18n


@dataclass(frozen=True)
class Theme:
    name: str
    title: str
    chain: tuple[Path, ...]  # this theme's folder first, then its parents'


class ThemeError(ValueError):
    pass


def discover_themes(themes_dir: Path) -> dict[str, Theme]:
    """Every folder of `themes_dir` with a `theme.toml`, its parent chain resolved."""
    raw: dict[str, dict[str, Any]] = {}
    for folder in sorted(themes_dir.iterdir()):
        manifest = folder / "theme.toml"
        if manifest.is_file():
            with manifest.open("rb") as handle:
                raw[folder.name] = tomllib.load(handle)
    themes: dict[str, Theme] = {}
    for name, data in raw.items():
        chain: list[Path] = []
        current: str | None = name
        while current is not None:
            if current not in raw:
                raise ThemeError(f"theme {name!r} names a parent {current!r} that is not installed")
            folder = themes_dir / current
            if folder in chain:
                raise ThemeError(f"theme {name!r} has a parent loop")
            chain.append(folder)
            current = raw[current].get("parent")
        themes[name] = Theme(name, str(data.get("title", name)), tuple(chain))
    if "default" not in themes:
        raise ThemeError(f"no default theme in {themes_dir}")
    return themes


class Templates:
    """One Jinja2 environment per theme, with gettext bound to the request's language."""

    def __init__(self, themes_dir: Path, globals_: dict[str, Any]) -> None:
        self.themes = discover_themes(themes_dir)
        self._environments = {name: self._environment(theme, globals_) for name, theme in self.themes.items()}
        self._static_versions: dict[tuple[str, str], str] = {}

    def _environment(self, theme: Theme, globals_: dict[str, Any]) -> Environment:
        env = Environment(
            loader=_theme_loader(theme),
            autoescape=select_autoescape(default=True, default_for_string=True),
            extensions=["jinja2.ext.i18n"],
            auto_reload=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.install_gettext_callables(i18n.gettext_, i18n.ngettext_, newstyle=True)  # type: ignore[attr-defined]
        env.globals.update(globals_)
        env.globals["theme_name"] = theme.name
        env.globals["static"] = lambda path: self.static_url(theme.name, path)
        env.filters["datetime"] = _format_datetime
        env.filters["ago"] = _format_ago
        env.filters["host"] = lambda url: urlsplit(url).netloc if url else ""
        env.filters["isodate"] = lambda value: value.isoformat(timespec="seconds") if value else ""
        return env

    def render(self, theme: str, name: str, context: dict[str, Any]) -> str:
        env = self._environments.get(theme) or self._environments["default"]
        return env.get_template(name).render(context)

    def static_file(self, theme: str, path: str) -> Path | None:
        """The file a theme serves at `path` (its own, else its parents'), never outside `static/`."""
        chosen = self.themes.get(theme)
        if chosen is None or not path or ".." in path.split("/") or path.startswith("/"):
            return None
        for folder in chosen.chain:
            candidate = (folder / "static" / path).resolve()
            if candidate.is_file() and (folder / "static").resolve() in candidate.parents:
                return candidate
        return None

    def static_url(self, theme: str, path: str) -> str:
        """`/static/{theme}/{path}?v=hash`: long-cached, yet changed when the file changes."""
        key = (theme, path)
        version = self._static_versions.get(key)
        if version is None:
            found = self.static_file(theme, path)
            version = hashlib.sha256(found.read_bytes()).hexdigest()[:10] if found else "0"
            self._static_versions[key] = version
        return f"/static/{theme}/{path}?v={version}"


def _theme_loader(theme: Theme) -> BaseLoader:
    """Plain names walk the whole chain; `ancestor:name` starts the walk at that ancestor (or the theme itself)."""
    folders = [folder / "templates" for folder in theme.chain]
    by_prefix: dict[str, BaseLoader] = {
        folder.name: FileSystemLoader(folders[index:]) for index, folder in enumerate(theme.chain)
    }
    return ChoiceLoader([FileSystemLoader(folders), PrefixLoader(by_prefix, delimiter=":")])


def _format_datetime(value: datetime | None, format: str = "medium") -> str:
    if value is None:
        return ""
    return _formatted(value, format, i18n.current_language())


# Babel takes ~30 µs a date; a thread page shows the same dates again and again.
@lru_cache(maxsize=20_000)
def _formatted(value: datetime, format: str, language: str) -> str:
    return format_datetime(value, format=format, tzinfo=UTC, locale=language)


def _format_ago(value: datetime | None) -> str:
    if value is None:
        return ""
    delta = value - datetime.now(UTC)
    return format_timedelta(delta, add_direction=True, locale=i18n.current_language(), threshold=1.0)

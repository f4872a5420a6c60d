"""Settings: read once from the environment and `forum.toml`, then passed to whoever needs them.

Nothing here is global: `load_settings()` builds a frozen `Settings`, and the composition roots
(`forum.app`, `forum.cli`) hand it on.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
THEMES_DIR = PROJECT_ROOT / "themes"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A setting has a value Jardin cannot use; the message names it."""


@dataclass(frozen=True)
class RateLimits:
    """Attempts allowed per window, per account and per client address."""

    login_per_account: int = 10
    login_per_address: int = 30
    login_window: float = 15 * 60
    register_per_address: int = 5
    register_window: float = 60 * 60
    api_per_token: int = 300
    api_per_address: int = 600
    api_window: float = 5 * 60
    post_per_account: int = 30
    post_window: float = 10 * 60
    # Each vote is an activity sent to the post's author and the category's followers.
    vote_per_account: int = 120
    vote_window: float = 10 * 60
    # Activities a remote instance may post to our inboxes (all its actors together).
    inbox_per_instance: int = 3000
    # Requests to the inboxes from one address, counted before their signature is checked: several
    # instances may share an address, and only this limit applies to requests that turn out forged.
    inbox_per_address: int = 6000
    inbox_window: float = 60


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    base_url: str
    secret_key: str
    trusted_proxies: tuple[IPNetwork, ...] = ()
    federation_allow_private: bool = False
    # Peers must sign their GETs of our ActivityStreams documents (Mastodon's "secure mode").
    federation_authorized_fetch: bool = False
    max_body_bytes: int = 1_000_000
    theme: str = "default"
    default_language: str = "en"
    rate_limits: RateLimits = field(default_factory=RateLimits)
    # Rendered pages kept for visitors, and thread pages' posts kept for members (0 turns a cache off).
    page_cache_entries: int = 2000
    page_cache_bytes: int = 32_000_000
    thread_cache_entries: int = 200
    log_level: str = "INFO"

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment, with `forum.toml` in the data dir as fallback."""
    env = dict(os.environ if environ is None else environ)
    data_dir = Path(env.get("FORUM_DATA_DIR", "./data")).resolve()
    file_values = _read_toml(data_dir / "forum.toml")

    def get(name: str, default: str) -> str:
        key = f"FORUM_{name}"
        if key in env:
            return env[key]
        value = file_values.get(key, file_values.get(name.lower()))
        if isinstance(value, bool):  # `allow = true` in TOML
            return "1" if value else "0"
        return default if value is None else str(value)

    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'forum.db'}")
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError("FORUM_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
    base_url = get("BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ConfigError(f"FORUM_BASE_URL must be an origin such as https://forum.example, not {base_url!r}")
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        base_url=base_url,
        secret_key=get("SECRET_KEY", "") or _stored_secret(data_dir),
        trusted_proxies=_parse_networks(get("TRUSTED_PROXIES", "")),
        federation_allow_private=_parse_flag("FORUM_FEDERATION_ALLOW_PRIVATE", get("FEDERATION_ALLOW_PRIVATE", "0")),
        federation_authorized_fetch=_parse_flag(
            "FORUM_FEDERATION_AUTHORIZED_FETCH", get("FEDERATION_AUTHORIZED_FETCH", "0")
        ),
        max_body_bytes=_parse_int("FORUM_MAX_BODY_BYTES", get("MAX_BODY_BYTES", "1000000")),
        theme=get("THEME", "default"),
        page_cache_entries=_parse_int("FORUM_PAGE_CACHE_ENTRIES", get("PAGE_CACHE_ENTRIES", "2000")),
        page_cache_bytes=_parse_int("FORUM_PAGE_CACHE_BYTES", get("PAGE_CACHE_BYTES", "32000000")),
        thread_cache_entries=_parse_int("FORUM_THREAD_CACHE_ENTRIES", get("THREAD_CACHE_ENTRIES", "200")),
        log_level=get("LOG_LEVEL", "INFO").upper(),
    )


def _read_toml(path: Path) -> dict[str, object]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from error


def _stored_secret(data_dir: Path) -> str:
    """The secret generated on first start, kept in the data dir so restarts keep sessions."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret


def _parse_networks(value: str) -> tuple[IPNetwork, ...]:
    networks = []
    for item in value.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as error:
            raise ConfigError(f"FORUM_TRUSTED_PROXIES: {item!r} is not an address or network") from error
    return tuple(networks)


def _parse_flag(name: str, value: str) -> bool:
    # A misspelt switch must not quietly leave a security setting as it was.
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (true or false), not {value!r}")


def _parse_int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError as error:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from error

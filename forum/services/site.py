"""Instance settings (name, description, rules, theme) and the first-run setup code."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from forum.errors import N_, Forbidden, InvalidInput
from forum.events import EventBus, SiteChanged
from forum.models import InstanceSetting, Member
from forum.models.base import utcnow
from forum.services import accounts

SETUP_CODE_KEY = "setup_code_sha256"


@dataclass(frozen=True)
class SiteInfo:
    name: str = "Jardin"
    description: str = ""
    rules: str = ""
    theme: str = "default"


async def load_site(session: AsyncSession, default_theme: str = "default") -> SiteInfo:
    rows = dict(
        (await session.execute(select(InstanceSetting.key, InstanceSetting.value).where(
            InstanceSetting.key.in_(("name", "description", "rules", "theme"))
        ))).all()
    )  # fmt: skip
    return SiteInfo(
        name=str(rows.get("name") or "Jardin"),
        description=str(rows.get("description") or ""),
        rules=str(rows.get("rules") or ""),
        theme=str(rows.get("theme") or default_theme),
    )


async def save_site(
    session: AsyncSession,
    bus: EventBus,
    *,
    name: str,
    description: str,
    rules: str,
    theme: str,
    themes: list[str],
) -> None:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput(N_("The instance needs a name of at most 100 characters."), field="name")
    if len(description) > 5000 or len(rules) > 20000:
        raise InvalidInput(N_("The description or the rules are too long."), field="description")
    if theme not in themes:
        raise InvalidInput(N_("Pick one of the installed themes."), field="theme")
    for key, value in (("name", name), ("description", description.strip()), ("rules", rules.strip()),
                       ("theme", theme)):  # fmt: skip
        await _put(session, key, value)
    await bus.publish(session, SiteChanged())


async def _put(session: AsyncSession, key: str, value: object) -> None:
    setting = await session.get(InstanceSetting, key)
    if setting is None:
        session.add(InstanceSetting(key=key, value=value))
    else:
        setting.value = value
        setting.updated_at = utcnow()
    await session.flush()


async def needs_setup(session: AsyncSession) -> bool:
    return await accounts.count_members(session) == 0


async def issue_setup_code(session: AsyncSession) -> str:
    """A new one-time code for creating the admin account; only its hash is stored."""
    code = "-".join(secrets.token_hex(3) for _ in range(3))
    await _put(session, SETUP_CODE_KEY, hashlib.sha256(code.encode()).hexdigest())
    return code


async def complete_setup(
    session: AsyncSession, base_url: str, *, code: str, username: str, email: str, password: str,
    language: str | None,
) -> Member:  # fmt: skip
    """Create the first (admin) account when the one-time code is right; the code then stops working."""
    if not await needs_setup(session):
        raise Forbidden(N_("This forum already has an administrator."))
    stored = await session.get(InstanceSetting, SETUP_CODE_KEY)
    given = hashlib.sha256(code.strip().encode()).hexdigest()
    if stored is None or not hmac.compare_digest(str(stored.value), given):
        raise InvalidInput(N_("That setup code is not the one `forum serve` printed."), field="code")
    member = await accounts.register(
        session, base_url, username=username, email=email, password=password, role="admin", language=language
    )
    await session.execute(delete(InstanceSetting).where(InstanceSetting.key == SETUP_CODE_KEY))
    return member

"""Accounts: registration, logging in, browser sessions, API tokens, preferences."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from forum import passwords
from forum.errors import N_, Conflict, InvalidInput, NotFound
from forum.models import Actor, ActorKind, ApiToken, LoginSession, Member
from forum.models.base import utcnow
from forum.services.actors import check_name, create_local_actor, ensure_name_free, normalize_name

SESSION_LIFETIME = timedelta(days=30)
TOKEN_PREFIX = "jdn_"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
LANGUAGES = ("en", "fr")


async def register(
    session: AsyncSession,
    base_url: str,
    *,
    username: str,
    email: str,
    password: str,
    role: str = "member",
    language: str | None = None,
) -> Member:
    """A new local member (and its Person actor); raises InvalidInput or Conflict with a reason."""
    username = normalize_name(username)
    email = email.strip()
    check_name(username)
    if not _EMAIL.match(email):
        raise InvalidInput(N_("Enter an email address such as name@example.org."), field="email")
    check_password(password)
    await ensure_name_free(session, username)
    await ensure_unique_email(session, email)
    actor = await create_local_actor(session, base_url, ActorKind.PERSON, username)
    member = Member(
        actor_id=actor.id,
        email=email,
        password_hash=passwords.hash_password(password),
        role=role,
        language=language if language in LANGUAGES else None,
    )
    member.actor = actor
    session.add(member)
    await session.flush()
    return member


def check_password(password: str) -> None:
    if len(password) < passwords.MIN_LENGTH:
        raise InvalidInput(
            N_("A password has at least %(count)d characters."), field="password", count=passwords.MIN_LENGTH
        )
    if len(password) > passwords.MAX_LENGTH:
        raise InvalidInput(
            N_("A password has at most %(count)d characters."), field="password", count=passwords.MAX_LENGTH
        )


async def find_member(session: AsyncSession, name_or_email: str) -> Member | None:
    key = name_or_email.strip().lower()
    query = select(Member).join(Member.actor)
    if "@" in key:
        return await session.scalar(query.where(func.lower(Member.email) == key))
    return await session.scalar(query.where(Actor.username_key == key, Actor.domain == ""))


async def get_member(session: AsyncSession, name: str) -> Member:
    member = await find_member(session, name)
    if member is None or "@" in name:
        raise NotFound(N_("No member is named “%(name)s”."), name=name)
    return member


async def authenticate(session: AsyncSession, name_or_email: str, password: str) -> Member | None:
    """The member when the password is right, else None; spends the same time either way."""
    member = await find_member(session, name_or_email)
    if member is None:
        passwords.verify_password(passwords.DUMMY_HASH, password)
        return None
    if not passwords.verify_password(member.password_hash, password):
        return None
    if passwords.needs_rehash(member.password_hash):
        member.password_hash = passwords.hash_password(password)
    member.last_login_at = utcnow()
    return member


async def start_session(session: AsyncSession, member: Member, user_agent: str = "") -> str:
    session_id = secrets.token_urlsafe(32)
    session.add(
        LoginSession(
            id=session_id,
            member_id=member.id,
            expires_at=utcnow() + SESSION_LIFETIME,
            user_agent=user_agent[:255],
        )
    )
    await session.flush()
    return session_id


async def member_for_session(session: AsyncSession, session_id: str) -> Member | None:
    return await session.scalar(
        select(Member)
        .join(LoginSession, LoginSession.member_id == Member.id)
        .where(LoginSession.id == session_id, LoginSession.expires_at > utcnow())
    )


async def end_session(session: AsyncSession, session_id: str) -> None:
    await session.execute(delete(LoginSession).where(LoginSession.id == session_id))


async def set_preferences(session: AsyncSession, member: Member, *, language: str | None, theme: str | None) -> None:
    if language is not None and language not in ("", *LANGUAGES):
        raise InvalidInput(N_("Choose English or French."), field="language")
    member.language = language or None
    member.theme = theme or None
    await session.flush()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(session: AsyncSession, member: Member, name: str) -> tuple[ApiToken, str]:
    """A new personal access token; the plain text is shown once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput(N_("Name the token (at most 100 characters)."), field="name")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(member_id=member.id, name=name, token_hash=_token_hash(plain), prefix=plain[:10])
    session.add(token)
    await session.flush()
    return token, plain


async def list_tokens(session: AsyncSession, member: Member) -> list[ApiToken]:
    result = await session.scalars(
        select(ApiToken).where(ApiToken.member_id == member.id, ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)
    )
    return list(result)


async def revoke_token(session: AsyncSession, member: Member, token_id: int) -> None:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.member_id == member.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(N_("No such token."))


async def member_for_token(session: AsyncSession, plain: str) -> tuple[Member, ApiToken] | None:
    row = (
        await session.execute(
            select(Member, ApiToken)
            .join(ApiToken, ApiToken.member_id == Member.id)
            .where(ApiToken.token_hash == _token_hash(plain), ApiToken.revoked_at.is_(None))
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def count_members(session: AsyncSession) -> int:
    return await session.scalar(select(func.count(Member.id))) or 0


async def ensure_unique_email(session: AsyncSession, email: str) -> None:
    if await session.scalar(select(Member.id).where(func.lower(Member.email) == email.lower())):
        raise Conflict(N_("An account already uses this email address."), field="email")

"""The forum's tables as SQLAlchemy 2 typed models, one module per area."""

from forum.models.accounts import ApiToken, LoginSession, Member, RoleGrant
from forum.models.actors import Actor, ActorKind
from forum.models.base import Base
from forum.models.content import Category, Post, PostRevision, Thread
from forum.models.site import CacheInvalidation, InstanceSetting

__all__ = [
    "Actor",
    "ActorKind",
    "ApiToken",
    "Base",
    "CacheInvalidation",
    "Category",
    "InstanceSetting",
    "LoginSession",
    "Member",
    "Post",
    "PostRevision",
    "RoleGrant",
    "Thread",
]

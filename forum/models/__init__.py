"""The forum's tables as SQLAlchemy 2 typed models, one module per area."""

from forum.models.accounts import ApiToken, LoginSession, Member, RoleGrant
from forum.models.actors import Actor, ActorKind
from forum.models.base import Base
from forum.models.content import Category, Post, PostRevision, Thread
from forum.models.federation import (
    Delivery,
    DeliveryState,
    Follow,
    FollowState,
    Instance,
    OutgoingActivity,
    ReceivedActivity,
    ReceivedState,
    Vote,
)
from forum.models.site import CacheInvalidation, InstanceSetting

__all__ = [
    "Actor",
    "ActorKind",
    "ApiToken",
    "Base",
    "CacheInvalidation",
    "Category",
    "Delivery",
    "DeliveryState",
    "Follow",
    "FollowState",
    "Instance",
    "InstanceSetting",
    "LoginSession",
    "Member",
    "OutgoingActivity",
    "Post",
    "PostRevision",
    "ReceivedActivity",
    "ReceivedState",
    "RoleGrant",
    "Thread",
    "Vote",
]

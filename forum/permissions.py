"""Who may do what. Roles are data: admin, gardener, concierge (instance-wide or per category), member, guest."""

from __future__ import annotations

from dataclasses import dataclass, field

from forum.errors import N_, Forbidden, NotAuthenticated

GARDENER = "gardener"
CONCIERGE = "concierge"
DUTIES = (GARDENER, CONCIERGE)


@dataclass(frozen=True)
class Viewer:
    """Who is asking: a member (with their grants) or a guest (member_id None)."""

    member_id: int | None = None
    actor_id: int | None = None
    username: str | None = None
    is_admin: bool = False
    # (duty, category id or None for instance-wide)
    grants: frozenset[tuple[str, int | None]] = field(default_factory=frozenset)
    language: str | None = None
    theme: str | None = None

    @property
    def is_member(self) -> bool:
        return self.member_id is not None

    def has_duty(self, duty: str, category_id: int | None = None) -> bool:
        if self.is_admin:
            return True
        return (duty, None) in self.grants or (category_id is not None and (duty, category_id) in self.grants)


GUEST = Viewer()


def require_member(viewer: Viewer) -> None:
    if not viewer.is_member:
        raise NotAuthenticated(N_("Log in first."))


def require_admin(viewer: Viewer) -> None:
    require_member(viewer)
    if not viewer.is_admin:
        raise Forbidden(N_("Only an administrator may do this."))


def can_see_category(viewer: Viewer, category_id: int, private: bool) -> bool:
    return not private or viewer.has_duty(GARDENER, category_id) or viewer.has_duty(CONCIERGE, category_id)


def can_edit_post(viewer: Viewer, author_id: int) -> bool:
    return viewer.actor_id is not None and viewer.actor_id == author_id

"""`Follow`, `Accept`, `Reject` and `Undo(Follow)`: who hears of a category, a member or a thread.

A public category accepts at once; one that approves its followers keeps the request pending for
the concierge; a private category refuses. A thread's `context` collection may be followed too: its
follower then receives the thread's new posts.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from activitypub.handlers.base import HandlerRefused, Received
from activitypub.outbox import answer_follow
from forum.models import Actor, ActorKind, Category, Follow, FollowState, Thread


async def on_follow(received: Received) -> str:
    target_id = received.object_id
    follower = await received.actor()
    target = await received.local_actor(target_id)
    thread: Thread | None = None
    if target is None and target_id is not None:
        thread = await received.session.scalar(
            select(Thread).where(Thread.context_id == target_id, Thread.local.is_(True))
        )
        if thread is not None:
            category = await received.category_of(thread)
            target = await received.session.get(Actor, category.actor_id)
    if target is None or target.kind == ActorKind.APPLICATION:
        raise HandlerRefused(f"nothing here to follow at {target_id}")
    state = FollowState.ACCEPTED
    if target.kind == ActorKind.GROUP:
        group_category = await received.session.scalar(select(Category).where(Category.actor_id == target.id))
        assert group_category is not None
        if group_category.private:
            await _answer(received, target, follower, "Reject")
            return "refused: the category is private"
        if group_category.approve_followers and thread is None:
            state = FollowState.PENDING
    # The `instance` record tells later deliveries whether this software reads Groups.
    await received.federation.resolver.instance(received.session, follower.domain)
    where = Follow.thread_id == thread.id if thread is not None else Follow.target_id == target.id
    follow = await received.session.scalar(select(Follow).where(Follow.follower_id == follower.id, where))
    if follow is None:
        follow = Follow(
            follower_id=follower.id,
            target_id=None if thread is not None else target.id,
            thread_id=thread.id if thread is not None else None,
            state=state,
        )
        received.session.add(follow)
    follow.activity_id = received.id
    if follow.state != FollowState.ACCEPTED:
        follow.state = state
    await received.session.flush()
    if follow.state == FollowState.ACCEPTED:
        await _answer(received, target, follower, "Accept")
        return "accepted"
    return "pending: the category approves its followers"


async def _answer(received: Received, target: Actor, follower: Actor, kind: str) -> None:
    base_url = received.federation.settings.base_url
    await answer_follow(received.session, base_url, kind, target, follower, received.id, received.object_id)


async def on_undo_follow(received: Received) -> str:
    follower = await received.actor()
    target = await received.local_actor(received.object_id)
    condition = Follow.activity_id == received.id
    if target is not None:
        condition = condition | (Follow.target_id == target.id)
    result = await received.session.execute(delete(Follow).where(Follow.follower_id == follower.id, condition))
    return "unfollowed" if result.rowcount else "no such follow"  # type: ignore[attr-defined]


async def _our_follow(received: Received) -> Follow | None:
    """The follow of ours that an `Accept` or `Reject` answers, by the Follow's id or by who follows whom."""
    inner = received.activity.get("object")
    follow_id = received.single(inner)
    follow = await received.session.scalar(select(Follow).where(Follow.activity_id == follow_id))
    if follow is None and isinstance(inner, dict):
        follower = await received.local_actor(received.single(inner.get("actor")))
        target = await received.session.scalar(select(Actor).where(Actor.ap_id == received.actor_id))
        if follower is not None and target is not None:
            follow = await received.session.scalar(
                select(Follow).where(Follow.follower_id == follower.id, Follow.target_id == target.id)
            )
    if follow is None:
        return None
    if follow.thread_id is not None:
        # A member's watch of a remote thread followed its context, which the thread's Group answers.
        thread = await received.session.get(Thread, follow.thread_id)
        category = await received.category_of(thread) if thread is not None else None
        target = await received.session.get(Actor, category.actor_id) if category is not None else None
    else:
        target = await received.session.get(Actor, follow.target_id) if follow.target_id else None
    if target is None or target.ap_id != received.actor_id:
        raise HandlerRefused("only the followed actor may answer a follow")
    return follow


async def on_accept(received: Received) -> str:
    follow = await _our_follow(received)
    if follow is None:
        return "no such follow"
    follow.state = FollowState.ACCEPTED
    return "context follow accepted" if follow.thread_id is not None else "follow accepted"


async def on_reject(received: Received) -> str:
    follow = await _our_follow(received)
    if follow is None:
        return "no such follow"
    if follow.thread_id is not None:
        # The watch works here without the origin's help (the category's follow, or backfill): it stays.
        return "context follow refused; the member still watches the thread here"
    await received.session.delete(follow)
    return "follow rejected"

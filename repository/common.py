"""Pieces shared by the in-memory and the SQL repositories."""

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from domain.page import PageKey

T = TypeVar('T')


class ReadOnlyUnitOfWorkError(RuntimeError):
    """A repository of a unit of work opened with `write=False` was asked to change data."""

    def __init__(self) -> None:
        super().__init__('write in a read-only unit of work')


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError('limit must not be negative')


def keyset_page(
    items: Iterable[T],
    key: Callable[[T], tuple[datetime, UUID]],
    *,
    limit: int | None,
    after: PageKey | None,
) -> list[T]:
    """`items` ordered by `key`, strictly after `after`, at most `limit` of them."""
    check_limit(limit)
    ordered = sorted(items, key=key)
    if after is not None:
        start = (after.created_at, after.item_id)
        ordered = [item for item in ordered if key(item) > start]
    return ordered if limit is None else ordered[:limit]


async def to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """Await `work` to its end even if the caller is cancelled meanwhile.

    A COMMIT abandoned half-way has an unknown outcome: the caller would roll back the
    file system change of a unit whose rows may have committed. So the outcome of `work`
    is returned (or raised) first, and a cancellation that came meanwhile is delivered
    at the caller's next suspension point.
    """
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
    if cancelled:
        current = asyncio.current_task()
        if current is not None:
            current.cancel()
    return task.result()

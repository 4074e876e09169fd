"""Pieces shared by the in-memory and the SQL repositories."""

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar
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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

T = TypeVar('T')

MIN_PAGE_LIMIT = 1
MAX_PAGE_LIMIT = 200
DEFAULT_PAGE_LIMIT = 50


@dataclass(frozen=True, slots=True)
class PageKey:
    """Position in an ordering by `created_at`, then id; the next page starts after it."""

    created_at: datetime
    item_id: UUID


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_key: PageKey | None


def page_of(rows: list[T], limit: int, key_of: Callable[[T], PageKey]) -> Page[T]:
    """A page from up to `limit + 1` rows: the extra row only tells that more exist."""
    items = rows[:limit]
    next_key = key_of(items[-1]) if len(rows) > limit else None
    return Page(items=items, next_key=next_key)

"""The view sweep: chat directories brought back to their rows (ADR 027).

Each write publishes its chat after its commit; a publication that a crash, a disk error
or a sandbox undid is put right here. The sweep publishes every chat changed since the
previous sweep's start (less an overlap for commits in flight and clocks apart), and
removes chat directories whose chat has no row. The first sweep on a data directory, and
one after a sweep that failed somewhere, publishes every chat.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol
from uuid import UUID

from usecase.interface import Clock, UnitOfWorkFactory
from usecase.publish import Publisher
from usecase.store_ports import ChatViews

logger = logging.getLogger('chat_storage.maintenance')

# a chat whose `updated_at` is this much before the previous sweep's start is swept again:
# its commit may have become visible only after that sweep read the rows
OVERLAP: Final = timedelta(minutes=5)
PAGE: Final = 500
EVERY_CHAT: Final = datetime(1970, 1, 1, tzinfo=UTC)


class SweepMarks(Protocol):
    """When the last complete sweep started."""

    async def last(self) -> datetime | None:
        """The start of the last sweep that completed, or None when none did."""
        ...

    async def record(self, started: datetime) -> None:
        """Remember `started` as the start of a sweep that has completed."""
        ...


@dataclass(frozen=True, slots=True)
class SweepResult:
    chats_checked: int = 0
    chats_republished: int = 0
    directories_removed: int = 0
    failures: int = 0


class SweepViews:
    """Bring the chat directories changed since the last sweep, and the orphans, to the rows."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        views: ChatViews,
        publisher: Publisher,
        marks: SweepMarks,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._views = views
        self._publisher = publisher
        self._marks = marks
        self._clock = clock

    async def __call__(self, *, every_chat: bool = False) -> SweepResult:
        started = self._clock.now()
        last = None if every_chat else await self._marks.last()
        since = EVERY_CHAT if last is None else last - OVERLAP
        checked, republished, failures = await self._publish_changed(since)
        removed, orphan_failures = await self._remove_orphans()
        failures += orphan_failures
        if failures:
            logger.warning(
                'view sweep: %d chats could not be published; retried next time', failures
            )
        else:
            await self._marks.record(started)
        if republished or removed:
            logger.info(
                'view sweep: %d chat directories republished, %d removed', republished, removed
            )
        return SweepResult(checked, republished, removed, failures)

    async def _publish_changed(self, since: datetime) -> tuple[int, int, int]:
        checked = republished = failures = 0
        after: UUID | None = None
        while True:
            async with self._uow(write=False) as uow:
                page = await uow.inventory.chats_changed_since(since, after=after, limit=PAGE)
            for chat in page:
                checked += 1
                try:
                    republished += await self._publisher.chat(chat.workspace_id, chat.chat_id)
                except Exception:
                    failures += 1
                    logger.warning('view sweep: publication of a chat failed', exc_info=True)
            if len(page) < PAGE:
                return checked, republished, failures
            after = page[-1].chat_id

    async def _remove_orphans(self) -> tuple[int, int]:
        """Remove the directories of chats without a row (or in another workspace's place)."""
        removed = failures = 0
        on_disk = await self._views.chats()
        for start in range(0, len(on_disk), PAGE):
            batch = on_disk[start : start + PAGE]
            async with self._uow(write=False) as uow:
                rows = await uow.chats.get_many([chat_id for _, chat_id in batch])
            owner = {chat.chat_id: chat.workspace_id for chat in rows}
            for workspace_id, chat_id in batch:
                if owner.get(chat_id) == workspace_id:
                    continue
                try:
                    if chat_id in owner:
                        await self._views.remove_chat(workspace_id, chat_id)
                        removed += 1
                    else:
                        # the publisher reads the row again: a directory is removed only
                        # when its chat has no row
                        removed += await self._publisher.chat(workspace_id, chat_id)
                except Exception:
                    failures += 1
                    logger.warning('view sweep: removal of a chat directory failed', exc_info=True)
        return removed, failures

"""Garbage collection of the blob area: blobs no row names, older than the grace period.

A blob becomes garbage when the row naming it is deleted or replaced (the blob is then
released: its age starts at the release) or when a write staged it and never committed.
The grace period protects a reader that still holds a released blob's path and a writer
between its stage and its commit. Quota and usage count rows, never blobs.
"""

import logging
from typing import Final
from uuid import UUID

from usecase.interface import UnitOfWorkFactory
from usecase.store_ports import BlobInventory

logger = logging.getLogger('chat_storage.maintenance')

DEFAULT_GRACE_SECONDS: Final = 3600.0
BATCH: Final = 500


class CollectGarbage:
    """Remove every blob older than the grace period that no row names."""

    def __init__(
        self, uow: UnitOfWorkFactory, inventory: BlobInventory, grace_seconds: float
    ) -> None:
        if grace_seconds <= 0:
            raise ValueError('grace_seconds must be positive')
        self._uow = uow
        self._inventory = inventory
        self.grace_seconds = grace_seconds

    async def garbage(self) -> list[UUID]:
        """The blobs that are garbage now (what `__call__` would remove)."""
        candidates = await self._inventory.older_than(self.grace_seconds)
        found: list[UUID] = []
        for start in range(0, len(candidates), BATCH):
            batch = candidates[start : start + BATCH]
            async with self._uow(write=False) as uow:
                named = await uow.inventory.named(batch)
            found.extend(blob_id for blob_id in batch if blob_id not in named)
        return found

    async def __call__(self) -> int:
        """Remove the garbage; how many blobs went."""
        garbage = await self.garbage()
        removed = 0
        for start in range(0, len(garbage), BATCH):
            removed += await self._inventory.remove(garbage[start : start + BATCH])
        if removed:
            logger.info('garbage collection removed %d blobs', removed)
        return removed

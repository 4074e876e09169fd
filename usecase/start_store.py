"""Start-up and periodic maintenance of the store (ADR 027).

At start-up, before serving, a data directory of the previous release is converted.
Then, while the service serves, the chat directories are brought to the rows (all of
them after a conversion) and the garbage is collected, at once and again every third of
the grace period, so that garbage lives at most about 4/3 of it.
"""

import logging

import anyio

from usecase.collect_garbage import CollectGarbage
from usecase.convert_legacy import ConvertLegacy
from usecase.sweep_views import SweepViews

logger = logging.getLogger('chat_storage.maintenance')


class StartStore:
    """Runs the maintenance of the store: once at start-up (`__call__`), then periodically
    (`maintain_periodically`, a task of the app's lifespan)."""

    def __init__(
        self, *, convert: ConvertLegacy, sweep: SweepViews, collect: CollectGarbage
    ) -> None:
        self._convert = convert
        self._sweep = sweep
        self._collect = collect

    @property
    def interval_seconds(self) -> float:
        """How often `maintain_periodically` runs by default: a third of the grace period."""
        return self._collect.grace_seconds / 3

    async def __call__(self) -> bool:
        """Convert a previous release's data directory, before serving (its errors stop
        the start); True when one was converted."""
        return await self._convert() is not None

    async def maintain(self, *, every_chat: bool = False) -> None:
        """One round of maintenance: the sweep (of every chat, or of those changed since
        the last sweep), then garbage collection."""
        await self._sweep(every_chat=every_chat)
        await self._collect()

    async def maintain_periodically(
        self, interval_seconds: float | None = None, *, every_chat_first: bool = False
    ) -> None:
        """Run `maintain` now and then every `interval_seconds` until cancelled; errors are
        logged and the next round runs on time. The service serves meanwhile: the API
        never reads the chat directories, and garbage costs only disk."""
        interval = self.interval_seconds if interval_seconds is None else interval_seconds
        every_chat = every_chat_first
        while True:
            try:
                await self.maintain(every_chat=every_chat)
            except Exception:
                logger.exception('maintenance of the store failed; it runs again')
            every_chat = False
            await anyio.sleep(interval)

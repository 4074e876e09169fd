"""Start-up and periodic maintenance of the store (ADR 027).

At start-up, before serving: a data directory of the previous release is converted, the
chat directories are brought to the rows (all of them after a conversion) and the
garbage is collected. While serving, the sweep and the collection run again every third
of the grace period, so that garbage lives at most about 4/3 of it.
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

    async def __call__(self) -> None:
        """Convert a previous release's data directory (its errors stop the start), then
        sweep and collect (their errors are logged: the rows are intact either way)."""
        converted = await self._convert()
        try:
            await self._sweep(every_chat=converted is not None)
            await self._collect()
        except Exception:
            logger.exception('start-up maintenance failed; it runs again periodically')

    async def maintain(self) -> None:
        """One round of the periodic maintenance: the sweep, then garbage collection."""
        await self._sweep()
        await self._collect()

    async def maintain_periodically(self, interval_seconds: float | None = None) -> None:
        """Run `maintain` every `interval_seconds` until cancelled; errors are logged and
        the next round runs on time."""
        interval = self.interval_seconds if interval_seconds is None else interval_seconds
        while True:
            await anyio.sleep(interval)
            try:
                await self.maintain()
            except Exception:
                logger.exception('periodic maintenance failed; it runs again')

"""What `chat-storage serve` does once before its workers start, in a short-lived child."""

import asyncio
import contextlib

from api.settings import Settings, metadata_config
from repository.factory import create_metadata_backend


def migrate_ahead(settings: Settings) -> None:
    """Bring the schema to head before the workers start, so that none of them imports
    Alembic (ADR 019). Best effort: a store that is down now is reported by the workers'
    own `migrate()`, exactly as when this step did not exist."""

    async def migrate() -> None:
        backend = create_metadata_backend(metadata_config(settings))
        try:
            await backend.connect()
            await backend.migrate()
        finally:
            await backend.close()

    with contextlib.suppress(Exception):
        asyncio.run(migrate())

"""What `chat-storage serve` does once before its workers start, in a short-lived child."""

import asyncio
import contextlib
import errno
import tempfile
from pathlib import Path

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


def data_dir_problem(data_dir: Path) -> str | None:
    """Why the data directory cannot be used (made, or written in), or None.

    Checked before the server starts, so that a wrong `STORAGE_DATA_DIR` is one clear line
    rather than every worker's traceback. A full disk is not refused: the service starts,
    serves reads, and `/readyz` says it cannot write (api-notes).
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir, prefix='.start-probe-'):
            pass
    except OSError as error:
        if error.errno in {errno.ENOSPC, errno.EDQUOT}:
            return None
        return f'{data_dir} cannot be used: {error.strerror or error}'
    return None

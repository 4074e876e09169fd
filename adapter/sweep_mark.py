"""`SweepMarks` as a file in the blob area: `<data>/.blobs/views-swept-at`."""

from datetime import datetime
from pathlib import Path
from typing import Final
from uuid import uuid4

import anyio.to_thread

BLOBS_DIR_NAME: Final = '.blobs'
MARK_NAME: Final = 'views-swept-at'


class FileSweepMarks:
    """The start of the last complete sweep, as an ISO 8601 time in one small file.

    Replaced whole (a temporary file renamed over it), so a reader sees the old mark or
    the new one; a mark that cannot be read counts as none (the next sweep does all).
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / BLOBS_DIR_NAME / MARK_NAME

    async def last(self) -> datetime | None:
        return await anyio.to_thread.run_sync(self._read)

    async def record(self, started: datetime) -> None:
        await anyio.to_thread.run_sync(self._write, started)

    def _read(self) -> datetime | None:
        try:
            text = self.path.read_text(encoding='ascii').strip()
            mark = datetime.fromisoformat(text)
        except (OSError, ValueError):
            return None
        return mark if mark.tzinfo is not None else None

    def _write(self, started: datetime) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f'{MARK_NAME}.{uuid4().hex}.tmp')
        try:
            temporary.write_text(started.isoformat(), encoding='ascii')
            temporary.replace(self.path)
        finally:
            temporary.unlink(missing_ok=True)

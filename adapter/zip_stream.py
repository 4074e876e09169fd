"""A ZIP archive written as a stream of chunks, never held whole in memory or on disk.

Python's `zipfile` writes to any object with `write()`: on one that cannot `tell()` or
`seek()` it writes each member's sizes and CRC-32 in a data descriptor after its bytes,
so the archive can go out as it is made. Members are stored (not compressed): exports
are mostly already-compressed files, and a stored member costs no CPU and no buffer.
ZIP64 records appear where sizes or offsets need them (members of 2 GiB and up, archives
past 4 GiB, more than 65,535 members).
"""

import contextlib
import stat
import zipfile
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import IO

from usecase.export_chat import ExportEntry

FLUSH_BYTES = 64 * 1024
_EARLIEST = (1980, 1, 1, 0, 0, 0)  # a ZIP time cannot say anything earlier
_MEMBER_ATTRIBUTES = (stat.S_IFREG | 0o644) << 16


class _Sink:
    """What `zipfile` writes, kept until the stream takes it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.pending = 0
        self.discarding = False

    def write(self, data: bytes, /) -> int:
        if not self.discarding:
            self._parts.append(bytes(data))
            self.pending += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush; `zipfile` calls it."""

    def close(self) -> None:
        """Nothing to close; the stream ends when the archive does."""

    def take(self) -> bytes:
        parts, self._parts, self.pending = self._parts, [], 0
        return parts[0] if len(parts) == 1 else b''.join(parts)


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    utc = moment.astimezone(UTC)
    return max(_EARLIEST, (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second))


def _member(entry: ExportEntry) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(entry.name, date_time=_zip_time(entry.modified_at))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = _MEMBER_ATTRIBUTES
    # the expected size lets zipfile choose ZIP64 for the member up front
    info.file_size = entry.size_bytes
    return info


async def zip_stream(
    entries: AsyncIterable[ExportEntry], *, force_zip64: bool = False
) -> AsyncIterator[bytes]:
    """The archive of `entries`, in chunks of about `FLUSH_BYTES` or one member chunk.

    Memory stays bounded by one chunk of a member plus the central directory (one record
    a member). An entry whose chunks fail ends the stream with that error before the
    central directory, so the partial archive is never a valid one. `force_zip64` writes
    ZIP64 local headers and data descriptors for every member (for tests of that path).
    """
    sink = _Sink()
    archive = zipfile.ZipFile(sink, mode='w', compression=zipfile.ZIP_STORED, allowZip64=True)
    handle: IO[bytes] | None = None
    try:
        async for entry in entries:
            handle = archive.open(_member(entry), mode='w', force_zip64=force_zip64)
            async with contextlib.aclosing(_chunks_of(entry)) as chunks:
                async for chunk in chunks:
                    handle.write(chunk)
                    if sink.pending >= FLUSH_BYTES:
                        yield sink.take()
            handle.close()
            handle = None
        archive.close()
    except BaseException:
        _abandon(archive, handle, sink)
        raise
    yield sink.take()


async def _chunks_of(entry: ExportEntry) -> AsyncGenerator[bytes, None]:
    chunks = entry.chunks
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()


def _abandon(archive: zipfile.ZipFile, handle: IO[bytes] | None, sink: _Sink) -> None:
    """Let `zipfile` finish into nothing, so that it has no open handle left to complain
    about when it is collected; nothing more of the archive is sent."""
    sink.discarding = True
    sink.take()
    with contextlib.suppress(Exception):
        if handle is not None:
            handle.close()
        archive.close()

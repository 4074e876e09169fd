"""Writing a stream into a new blob: in batches, hashed while written, then fsynced.

Each batch is written and hashed in two worker threads of their own while the next batch
arrives from the stream (`anyio.to_thread.run_sync`, which a cancelled caller waits for):
the blob is removed only once no thread uses it any more.
"""

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread

from adapter.file_system import (
    CREATE_FLAGS,
    FILE_MODE,
    fsync_dir,
    staging_error,
    start_writeback,
    write_all,
)
from domain.error import ContentLimitExceededError


class _BlobFile:
    """A new blob written in batches by worker threads, hashed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.digest = hashlib.sha256()
        self.written = 0
        # the first failure of a write started without waiting (`_Pipeline`)
        self.failure: OSError | None = None

    def create(self) -> None:
        try:
            self.fd = os.open(self.path, CREATE_FLAGS, FILE_MODE)
        except FileNotFoundError:
            # the first blob of its prefix: the prefix directory's entry is made durable
            # before any blob in it can be
            self.path.parent.mkdir(exist_ok=True)
            fsync_dir(self.path.parent.parent)
            self.fd = os.open(self.path, CREATE_FLAGS, FILE_MODE)

    def write(self, data: bytes | bytearray) -> None:
        """Write a batch; the caller hashes it (`digest.update`) in another thread."""
        if self.fd is None:
            raise ValueError('file is not open')
        write_all(self.fd, data)
        start_writeback(self.fd, self.written, len(data))
        self.written += len(data)

    def finish(self) -> None:
        """fsync the blob, close it and fsync its directory entry."""
        if self.fd is None:
            raise ValueError('file is not open')
        os.fsync(self.fd)
        fd, self.fd = self.fd, None
        os.close(fd)
        fsync_dir(self.path.parent)

    def remove(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


class _Pipeline:
    """Writes and hashes each batch in two worker threads of their own (both release the
    GIL) while the next batch arrives from the stream: one pass over the bytes."""

    def __init__(self, task_group: anyio.abc.TaskGroup, file: _BlobFile) -> None:
        self._task_group = task_group
        self._file = file
        self._running: list[anyio.Event] = []

    async def push(self, batch: bytearray) -> None:
        await self.settle()
        if self._file.fd is None:
            await _staging_call(self._file.create)
        self._running = [self._start(self._file.write, batch), self._start(self._hash, batch)]

    async def finish(self, batch: bytearray) -> None:
        """Write the last batch, then fsync the blob and its directory entry."""
        if batch or self._file.fd is None:
            await self.push(batch)
        await self.settle()
        await _staging_call(self._file.finish)

    async def settle(self) -> None:
        """Wait for the batch in flight; its write's failure is raised here."""
        for event in self._running:
            await event.wait()
        self._running = []
        if self._file.failure is not None:
            raise staging_error(self._file.failure) from self._file.failure

    def _hash(self, batch: bytearray) -> None:
        self._file.digest.update(batch)

    def _start(self, func: Callable[[bytearray], None], batch: bytearray) -> anyio.Event:
        done = anyio.Event()

        async def run() -> None:
            try:
                await anyio.to_thread.run_sync(func, batch)
            except OSError as exc:
                # recorded, not raised: a failing child would cancel the stream's reader
                if self._file.failure is None:
                    self._file.failure = exc
            finally:
                done.set()

        self._task_group.start_soon(run)
        return done


async def _staging_call(func: Callable[[], None]) -> None:
    try:
        await anyio.to_thread.run_sync(func)
    except OSError as exc:
        raise staging_error(exc) from exc


async def stage_blob(
    path: Path,
    head: bytearray,
    chunks: AsyncIterator[bytes],
    limit_bytes: int,
    chunk_bytes: int,
) -> tuple[int, str]:
    """Write `head`, then the rest of the stream, to a new file at `path` (mode 0o444) and
    fsync it and its directory entry; its size and sha256.

    Raises `ContentLimitExceededError` as soon as more than `limit_bytes` arrive, and the
    domain error of a failed disk call; then nothing is left at `path`.
    """
    file = _BlobFile(path)
    try:
        try:
            async with anyio.create_task_group() as task_group:
                pipeline = _Pipeline(task_group, file)
                size = await _write(head, chunks, limit_bytes, chunk_bytes, pipeline)
        except BaseExceptionGroup as group:
            # the pipeline's children record their failures instead of raising: the one
            # exception in here is the stream's or ours
            if len(group.exceptions) != 1:
                raise
            sole = group.exceptions[0]
            raise sole from sole.__cause__
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(file.remove)
        raise
    return size, file.digest.hexdigest()


async def _write(
    head: bytearray,
    chunks: AsyncIterator[bytes],
    limit_bytes: int,
    chunk_bytes: int,
    pipeline: _Pipeline,
) -> int:
    """Write the stream in batches of about `chunk_bytes`; the number of bytes.

    Only our own disk calls are translated: an OSError of the stream (a client that went
    away) is not a disk error.
    """
    size = len(head)
    batch = head
    async for chunk in chunks:
        size += len(chunk)
        if size > limit_bytes:
            # stop reading: the rest of the stream is never pulled
            raise ContentLimitExceededError(limit_bytes)
        batch += chunk
        if len(batch) >= chunk_bytes:
            await pipeline.push(batch)
            batch = bytearray()
    await pipeline.finish(batch)
    return size

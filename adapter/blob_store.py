"""Immutable blobs on a local file system: the `BlobStore` and `BlobInventory` ports.

A blob is written once under a new id at `.blobs/<first two hex digits>/<id hex>` (see
`adapter/file_system.py`), with mode 0o444, and fsynced with its directory entry before
`stage` returns; nothing changes it afterwards. Blocking calls run in worker threads
(`anyio.to_thread.run_sync`), which a cancelled caller waits for: no clean-up ever runs
under a thread that still uses what it cleans.
"""

import contextlib
import hashlib
import os
import shutil
import stat
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection
from pathlib import Path
from uuid import UUID

import anyio
import anyio.abc
import anyio.to_thread

from adapter.file_system import (
    BLOBS_DIR_NAME,
    CREATE_FLAGS,
    DEFAULT_CHUNK_BYTES,
    FILE_MODE,
    READ_FLAGS,
    TMP_DIR_NAME,
    UnexpectedFileError,
    blob_relative_path,
    fsync_dir,
    open_regular,
    parse_hex_id,
    staging_error,
    start_writeback,
    storage_error,
    write_all,
)
from adapter.id_generator import UuidGenerator
from domain.content import ByteRange, StagedContent
from domain.error import ContentLimitExceededError, StoredContentMissingError
from usecase.interface import BlobState, IdGenerator


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


class BlobStore:
    """`BlobStore` and `BlobInventory` on a local file system; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        ids: IdGenerator | None = None,
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError('chunk_bytes must be positive')
        self.data_dir = data_dir.absolute()
        self.blobs_dir = self.data_dir / BLOBS_DIR_NAME
        self.tmp_dir = self.blobs_dir / TMP_DIR_NAME
        self._chunk_bytes = chunk_bytes
        self._ids = ids or UuidGenerator()
        # start-up only
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def blob_path(self, blob_id: UUID) -> Path:
        return self.data_dir / blob_relative_path(blob_id)

    # --- BlobStore --------------------------------------------------------------------

    async def stage(
        self, content: AsyncIterable[bytes], *, limit_bytes: int, inline_bytes: int = 0
    ) -> StagedContent:
        chunks = aiter(content)
        head = bytearray()
        async for chunk in chunks:
            head += chunk
            if len(head) > limit_bytes:
                raise ContentLimitExceededError(limit_bytes)
            if len(head) > inline_bytes:
                break
        else:
            # all of it fits in a row: no blob, no thread
            return StagedContent(
                size_bytes=len(head), sha256=hashlib.sha256(head).hexdigest(), inline=bytes(head)
            )
        return await self._stage_blob(head, chunks, limit_bytes)

    async def _stage_blob(
        self, head: bytearray, chunks: AsyncIterator[bytes], limit_bytes: int
    ) -> StagedContent:
        blob_id = self._ids.new()
        file = _BlobFile(self.blob_path(blob_id))
        try:
            try:
                async with anyio.create_task_group() as task_group:
                    size = await self._write(head, chunks, limit_bytes, _Pipeline(task_group, file))
            except BaseExceptionGroup as group:
                # the pipeline's children record their failures instead of raising: the
                # one exception in here is the stream's or ours
                if len(group.exceptions) != 1:
                    raise
                sole = group.exceptions[0]
                raise sole from sole.__cause__
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(file.remove)
            raise
        return StagedContent(size_bytes=size, sha256=file.digest.hexdigest(), blob_id=blob_id)

    async def _write(
        self,
        head: bytearray,
        chunks: AsyncIterator[bytes],
        limit_bytes: int,
        pipeline: _Pipeline,
    ) -> int:
        """Write the stream in batches of about `chunk_bytes`; the number of bytes.

        Only our own disk calls are translated: an OSError of the stream (a client that
        went away) is not a disk error.
        """
        size = len(head)
        batch = head
        async for chunk in chunks:
            size += len(chunk)
            if size > limit_bytes:
                # stop reading: the rest of the stream is never pulled
                raise ContentLimitExceededError(limit_bytes)
            batch += chunk
            if len(batch) >= self._chunk_bytes:
                await pipeline.push(batch)
                batch = bytearray()
        await pipeline.finish(batch)
        return size

    async def discard(self, staged: StagedContent) -> None:
        if staged.blob_id is not None:
            await self.remove([staged.blob_id])

    async def read(
        self, blob_id: UUID, byte_range: ByteRange | None = None
    ) -> AsyncIterator[bytes]:
        path = self.blob_path(blob_id)
        position = 0 if byte_range is None else byte_range.first
        stop = None if byte_range is None else byte_range.last + 1
        fd: int | None = None
        try:
            while stop is None or position < stop:
                size = (
                    self._chunk_bytes if stop is None else min(self._chunk_bytes, stop - position)
                )
                try:
                    if fd is None:
                        fd = await anyio.to_thread.run_sync(open_regular, path, READ_FLAGS)
                    data = await anyio.to_thread.run_sync(os.pread, fd, size, position)
                except OSError as exc:
                    raise storage_error(exc) from exc
                if not data:
                    break
                position += len(data)
                yield data
        finally:
            if fd is not None:
                # no thread uses it any more: a cancelled call waited for its thread
                os.close(fd)

    async def path(self, blob_id: UUID) -> str:
        path = self.blob_path(blob_id)
        try:
            mode = (await anyio.to_thread.run_sync(os.lstat, path)).st_mode
        except OSError as exc:
            raise storage_error(exc) from exc
        if not stat.S_ISREG(mode):
            raise StoredContentMissingError
        return str(path)

    async def release(self, blob_ids: Collection[UUID]) -> None:
        try:
            await anyio.to_thread.run_sync(self._touch, list(blob_ids))
        except OSError as exc:
            raise storage_error(exc) from exc

    def _touch(self, blob_ids: list[UUID]) -> None:
        for blob_id in blob_ids:
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.blob_path(blob_id), follow_symlinks=False)

    async def is_writable(self) -> bool:
        try:
            await anyio.to_thread.run_sync(self._probe)
        except OSError:
            return False
        return True

    def _probe(self) -> None:
        # a uuid name like every staging name: a leftover is garbage collected
        path = self.tmp_dir / self._ids.new().hex
        fd = os.open(path, CREATE_FLAGS, 0o600)
        try:
            write_all(fd, b'probe')
            os.fsync(fd)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    # --- BlobInventory ----------------------------------------------------------------

    async def older_than(self, age_seconds: float) -> list[UUID]:
        try:
            return await anyio.to_thread.run_sync(self._older_than, time.time() - age_seconds)
        except OSError as exc:
            raise storage_error(exc) from exc

    def _older_than(self, cutoff: float) -> list[UUID]:
        """Blobs and staging leftovers whose inode last changed before `cutoff`.

        The change time, not the modification time: a release (`os.utime`), a new hard
        link (a view being staged in `.blobs/tmp`) and a rename all set it to now, so a
        name a view is being moved through never looks old.
        """
        found: list[UUID] = []
        with os.scandir(self.blobs_dir) as prefixes:
            directories = [
                entry.path
                for entry in prefixes
                if entry.is_dir(follow_symlinks=False)
                and (entry.name == TMP_DIR_NAME or _is_prefix(entry.name))
            ]
        for directory in directories:
            with os.scandir(directory) as entries:
                for entry in entries:
                    blob_id = parse_hex_id(entry.name)
                    if blob_id is None:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        changed = entry.stat(follow_symlinks=False).st_ctime
                        if changed < cutoff:
                            found.append(blob_id)
        return found

    async def remove(self, blob_ids: Collection[UUID]) -> int:
        try:
            return await anyio.to_thread.run_sync(self._remove, list(blob_ids))
        except OSError as exc:
            raise storage_error(exc) from exc

    def _remove(self, blob_ids: list[UUID]) -> int:
        removed = 0
        for blob_id in blob_ids:
            try:
                self.blob_path(blob_id).unlink()
            except FileNotFoundError:
                removed += _remove_leftover(self.tmp_dir / blob_id.hex)
            else:
                removed += 1
        return removed

    async def inspect(self, blob_id: UUID) -> BlobState | None:
        try:
            return await anyio.to_thread.run_sync(self._inspect, blob_id)
        except (FileNotFoundError, UnexpectedFileError):
            return None
        except OSError as exc:
            raise storage_error(exc) from exc

    def _inspect(self, blob_id: UUID) -> BlobState:
        fd = open_regular(self.blob_path(blob_id), READ_FLAGS)
        try:
            status = os.fstat(fd)
            digest = hashlib.sha256()
            while data := os.read(fd, self._chunk_bytes):
                digest.update(data)
        finally:
            os.close(fd)
        return BlobState(
            size_bytes=status.st_size,
            sha256=digest.hexdigest(),
            writable=bool(status.st_mode & 0o222),
        )


def _is_prefix(name: str) -> bool:
    return len(name) == 2 and all(c in '0123456789abcdef' for c in name)  # noqa: PLR2004


def _remove_leftover(path: Path) -> int:
    """Remove a staging leftover, a file or a directory being removed; 1 when there was one."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return 0
    if stat.S_ISDIR(mode):
        # shutil.rmtree works through directory descriptors: a symlink inside is removed,
        # never followed
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return 1

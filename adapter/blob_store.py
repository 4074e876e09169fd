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
from collections.abc import AsyncIterable, AsyncIterator, Collection
from pathlib import Path
from uuid import UUID

import anyio
import anyio.to_thread

from adapter.blob_staging import stage_blob
from adapter.file_system import (
    BLOBS_DIR_NAME,
    CREATE_FLAGS,
    DEFAULT_CHUNK_BYTES,
    READ_FLAGS,
    TMP_DIR_NAME,
    UnexpectedFileError,
    blob_relative_path,
    digest_of,
    open_regular,
    parse_hex_id,
    storage_error,
    write_all,
)
from adapter.id_generator import UuidGenerator
from domain.content import ByteRange, StagedContent
from domain.error import ContentLimitExceededError, StoredContentMissingError
from usecase.interface import IdGenerator
from usecase.store_ports import BlobState

# a range at most this long is read in one call on the event loop
SMALL_READ_BYTES = 64 * 1024


class _Reader:
    """A blob opened by the worker thread of its first read; the descriptor is kept here,
    not returned, so that a caller cancelled during the open still closes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def pread(self, size: int, offset: int) -> bytes:
        if self.fd is None:
            self.fd = open_regular(self.path, READ_FLAGS)
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


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
        if inline_bytes > 0:
            async for chunk in chunks:
                head += chunk
                if len(head) > limit_bytes:
                    raise ContentLimitExceededError(limit_bytes)
                if len(head) > inline_bytes:
                    break
            else:
                # all of it fits in a row: no blob, no thread
                return StagedContent(
                    size_bytes=len(head),
                    sha256=hashlib.sha256(head).hexdigest(),
                    inline=bytes(head),
                )
        blob_id = self._ids.new()
        size, sha256 = await stage_blob(
            self.blob_path(blob_id), head, chunks, limit_bytes, self._chunk_bytes
        )
        return StagedContent(size_bytes=size, sha256=sha256, blob_id=blob_id)

    async def discard(self, staged: StagedContent) -> None:
        if staged.blob_id is not None:
            await self.remove([staged.blob_id])

    async def read(
        self, blob_id: UUID, byte_range: ByteRange | None = None
    ) -> AsyncIterator[bytes]:
        if byte_range is not None and byte_range.length <= SMALL_READ_BYTES:
            # a small part read whole: from the page cache that costs less on the event
            # loop than a call to a thread and back (ADR 019)
            try:
                fd = open_regular(self.blob_path(blob_id), READ_FLAGS)
                try:
                    data = os.pread(fd, byte_range.length, byte_range.first)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise storage_error(exc) from exc
            if data:
                yield data
            return
        reader = _Reader(self.blob_path(blob_id))
        position = 0 if byte_range is None else byte_range.first
        stop = None if byte_range is None else byte_range.last + 1
        try:
            while stop is None or position < stop:
                size = (
                    self._chunk_bytes if stop is None else min(self._chunk_bytes, stop - position)
                )
                try:
                    data = await anyio.to_thread.run_sync(reader.pread, size, position)
                except OSError as exc:
                    raise storage_error(exc) from exc
                if not data:
                    break
                position += len(data)
                yield data
                if len(data) < size:
                    break  # a short read of an immutable file is its end: no call for EOF
        finally:
            # no thread uses it any more: a cancelled call waited for its thread
            reader.close()

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
        if not blob_ids:
            return
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
            _, sha256 = digest_of(fd, self._chunk_bytes)
        finally:
            os.close(fd)
        return BlobState(
            size_bytes=status.st_size,
            sha256=sha256,
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

"""Chat directories on a local file system: staging, atomic swaps and a trash (ADR 011).

Layout under the data directory:

- `workspaces/<workspace_id>/chats/<chat_id>/` holds `history.md` and the attachments,
  named as they are, and nothing else of the service's own;
- `.staging/<token>` holds uploads being written (and `probe-<token>` readiness probes);
- `.trash/<token>` holds what a pending change took away, beside `.trash/<token>.json`,
  the sidecar that says where it came from.

Every blocking call runs in a worker thread, but for a few small ones that cost less
than the hop to a thread: a small read, a small append and a new chat's directory run on
the event loop (ADR 019, ADR 024). A worker thread cannot be stopped, so a cancelled
caller never releases what a running thread still uses: clean-ups wait for the thread,
and a change applied after its caller went away is rolled back.
"""

import asyncio
import contextlib
import contextvars
import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from uuid import UUID, uuid4

from domain.chat import HISTORY_FILE_NAME, Chat, ChatAttachmentName, ChatFile
from domain.content import ByteRange, StagedContent
from domain.error import (
    ContentLimitExceededError,
    DomainError,
    InsufficientStorageError,
    ServiceUnavailableError,
    StoredContentMissingError,
    StoredVersionChangingError,
)
from usecase.interface import ByteStream, PendingSync, StorageChange

T = TypeVar('T')
P = ParamSpec('P')

WORKSPACES_DIR_NAME = 'workspaces'
CHATS_DIR_NAME = 'chats'
STAGING_DIR_NAME = '.staging'
TRASH_DIR_NAME = '.trash'
SIDECAR_SUFFIX = '.json'
DEFAULT_CHUNK_BYTES = 1024 * 1024
# a read of at most this many bytes that is the whole read runs on the event loop: open,
# check, pread and close of a file in the page cache take tens of microseconds, less
# than handing the call to a worker thread and back (ADR 019)
INLINE_READ_BYTES = 64 * 1024
# a stage that is not durable (an append) and no larger than this is held in memory until
# it is copied into `history.md`: no staging file to create, write and remove, and no
# thread (ADR 019); bounded by the requests in flight, 16 KiB each at most
HELD_STAGE_BYTES = 16 * 1024
# paths of this many chats are kept (about 300 bytes each) before the cache starts over
_CHAT_PATHS_KEPT = 4096
# directories above the chat directories that this process has fsynced (ADR 019)
_SYNCED_DIRS_KEPT = 4096

_log = logging.getLogger(__name__)

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# ENXIO: a FIFO with no reader, opened for writing without blocking
_MISSING = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR, errno.ENXIO})
# O_NOFOLLOW: a sandbox may plant a symlink in a chat directory; it must not lead us out.
# O_NONBLOCK: opening a planted FIFO must not hang a worker thread; regular files ignore it.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# files that end up in a chat directory (history.md, attachments, staged content renamed
# there): readable by a sandbox that mounts the directory under another uid
_FILE_MODE = 0o644
_TOKEN = re.compile('[0-9a-f]{32}')
# a staging token starts with the owner id of the process that wrote it (ADR 016)
OWNER_ID_LENGTH = 12
_OWNER = re.compile(f'[0-9a-f]{{{OWNER_ID_LENGTH}}}')


def new_owner_id() -> str:
    """A random id for one process's staging and trash entries."""
    return uuid4().hex[:OWNER_ID_LENGTH]


class _UnexpectedFileError(OSError):
    """The path holds something other than the regular file we wrote there."""

    def __init__(self) -> None:
        super().__init__(errno.ENOENT, 'not the expected regular file')


def _storage_error(exc: OSError, chat_id: UUID | None = None) -> DomainError:
    # domain errors carry only their code; the chained OSError keeps errno and message for
    # the log, whose formatter leaves its paths out (api/logs.py)
    if exc.errno in _DISK_FULL:
        return InsufficientStorageError()
    if exc.errno in _MISSING:
        return StoredContentMissingError(chat_id)
    return ServiceUnavailableError()


def _staging_error(exc: OSError) -> DomainError:
    if exc.errno in _DISK_FULL:
        return InsufficientStorageError()
    return ServiceUnavailableError()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[written:]
        if offset is not None:
            offset += written


def _open_regular(path: Path, flags: int) -> int:
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _UnexpectedFileError
    return fd


# the version a service write gave a file (ADR 011): `s:<sha256>` for an attachment,
# `h:<revision>` for a history put. A rename keeps it with the inode, so a reader tells the
# version it opened from one another write has put at the name since its record was read
VERSION_XATTR = 'user.chat_storage.version'
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM})
VersionCheck = Callable[[bytes | None], bool]


def attachment_version(sha256: str) -> bytes:
    return f's:{sha256}'.encode()


def history_version(revision: int) -> bytes:
    return f'h:{revision}'.encode()


def _tag_version(path: Path, version: bytes) -> None:
    """Mark a staged file with its version; a file system without user xattrs goes
    unmarked (its readers then cannot tell a swap in flight, as before ADR 011's rule)."""
    try:
        os.setxattr(path, VERSION_XATTR, version, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_XATTRS:
            raise


def _version_of(fd: int) -> bytes | None:
    try:
        return os.getxattr(fd, VERSION_XATTR)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return None
        raise


def version_at(path: Path) -> bytes | None:
    """The version mark of the entry at `path` (a link itself, not its target); None when
    there is none or nothing can be read there."""
    try:
        return os.getxattr(path, VERSION_XATTR, follow_symlinks=False)
    except OSError:
        return None


def is_attachment_version(sha256: str | None) -> VersionCheck:
    """An attachment's file is its record's when its mark names the record's sha256 (None:
    there is no record, so no file the service wrote is the rows').

    Unmarked (a sandbox's file, a file system without xattrs) or marked otherwise than a
    service write would: the read goes on, as it did before there were marks."""
    expected = None if sha256 is None else attachment_version(sha256)

    def check(version: bytes | None) -> bool:
        return version is None or not version.startswith(b's:') or version == expected

    return check


def is_history_version(revision: int) -> VersionCheck:
    """`history.md` is the record's when no put newer than the record made it (appends
    keep the file, and its mark, of the last put)."""

    def check(version: bytes | None) -> bool:
        if version is None or not version.startswith(b'h:') or not version[2:].isdigit():
            return True
        return int(version[2:]) <= revision

    return check


def _open_checked(path: Path, check: VersionCheck | None) -> int:
    """Open a stored file for reading; with `check`, only the version it accepts."""
    fd = _open_regular(path, _READ_FLAGS)
    try:
        accepted = check is None or check(_version_of(fd))
    except BaseException:
        os.close(fd)
        raise
    if not accepted:
        os.close(fd)
        raise StoredVersionChangingError
    return fd


def _refuse_symlinked_dirs(root: Path, path: Path) -> None:
    """Every directory between `root` and `path` is a real one, not a symlink.

    `O_NOFOLLOW` guards only the last component of a path; a chat (or workspace)
    directory swapped for a symlink would otherwise lead reads and writes out of `root`.
    """
    # on strings: pathlib's joins cost more than the lstat calls on a small read
    prefix = f'{root}{os.sep}'
    text = str(path)
    if not text.startswith(prefix):
        raise ValueError(f'{path} is not below {root}')
    directory = str(root)
    for part in text[len(prefix) :].split(os.sep)[:-1]:  # noqa: PTH206 - strings, as above
        directory = f'{directory}{os.sep}{part}'
        if stat.S_ISLNK(os.lstat(directory).st_mode):
            raise OSError(errno.ELOOP, 'a directory on the path is a symlink')


def _load_sync_file_range() -> Callable[[int, int, int], None]:
    """sync_file_range(SYNC_FILE_RANGE_WRITE) where Linux has it, else nothing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
        sync_file_range = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda _fd, _offset, _size: None
    sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    write = 2  # SYNC_FILE_RANGE_WRITE: start write-out of dirty pages, do not wait

    def start(fd: int, offset: int, size: int) -> None:
        sync_file_range(fd, offset, size, write)  # advisory: a failure changes nothing

    return start


_start_writeback = _load_sync_file_range()
_PROC_FDS = '/proc/self/fd'
# how long a sent descriptor stays open, at most, for the server to open its own
SEND_GRACE_SECONDS = 10.0


def _remove(path: Path) -> None:
    """Remove a file or a tree; what is already gone (another process settling the same
    change) is no error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=_gone_is_removed)
    else:
        path.unlink(missing_ok=True)


def _gone_is_removed(
    _func: object, _path: str, exc_info: tuple[type, BaseException, object]
) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


class _OpenFile:
    """One file descriptor, opened and used by worker threads."""

    def __init__(self, path: Path, check: VersionCheck | None = None) -> None:
        self.path = path
        self.check = check
        self.fd: int | None = None

    def open_regular(self) -> None:
        self.fd = _open_checked(self.path, self.check)

    def pread(self, size: int, offset: int) -> bytes:
        if self.fd is None:
            raise ValueError('file is not open')
        return os.pread(self.fd, size, offset)

    def open_and_pread(self, size: int, offset: int, *, last: bool, root: Path) -> bytes:
        """Check the directories below `root`, open and read the first chunk in one
        worker-thread call; close as well when it is the last one (`last`, or the file
        ended): a small file costs one thread hop."""
        _refuse_symlinked_dirs(root, self.path)
        self.open_regular()
        data = self.pread(size, offset)
        if last or len(data) < size:
            self.close()
        return data

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class _SentDescriptor:
    """`SendableFile`: an opened, checked file named by `/proc/self/fd/<fd>` (ADR 019).

    The server opens the path itself, some time after it was handed over; the descriptor
    stays open until the server holds one of its own on the same file (the same inode), or
    a grace period has passed. What counts as the server's is a descriptor opened after
    this one, and not by this storage: one that already named the file (an earlier
    download of it, still finishing) does not, nor does another read's or download's of
    the same file (every read of ours opens with `O_NOFOLLOW`, which a server opening a
    path it was given has no reason to pass). Closed too early, the number could be reused
    by another file before the server opens it, which would then be sent under this one's
    headers. Nothing is written to disk, so a crash leaves nothing behind.
    """

    def __init__(self, fd: int, size_bytes: int) -> None:
        self.fd = fd
        self.size_bytes = size_bytes
        self.path = f'{_PROC_FDS}/{fd}'
        stat_result = os.fstat(fd)
        self._inode = (stat_result.st_dev, stat_result.st_ino)
        # before the path is handed over, so the server's own descriptor cannot be among them
        self._held_before = _descriptors_of(self._inode)
        _OUTSTANDING[self._inode] = _OUTSTANDING.get(self._inode, 0) + 1

    async def release(self, *, sent: bool = True) -> None:
        try:
            waited = 0.0 if sent else SEND_GRACE_SECONDS
            while waited < SEND_GRACE_SECONDS and not self._opened_since():
                pause = 0.01 if waited < 0.1 else 0.25  # noqa: PLR2004 - soon, then rarely
                await asyncio.sleep(pause)
                waited += pause
        finally:
            os.close(self.fd)
            left = _OUTSTANDING.pop(self._inode) - 1
            if left:
                _OUTSTANDING[self._inode] = left

    def _opened_since(self) -> bool:
        """Whether a descriptor that is not this storage's, opened after this one, holds
        the same file, while no other download of the file waits for the server: the
        server's open of another download's path could not be told from one of this
        one's, so then the grace period decides."""
        if _OUTSTANDING.get(self._inode, 0) > 1:
            return False
        # /proc is memory, not disk: these lookups never wait
        opened = _descriptors_of(self._inode) - self._held_before
        return any(not _opened_by_storage(name) for name in opened)


# the sent descriptors not yet released, by file (device, inode)
_OUTSTANDING: dict[tuple[int, int], int] = {}


def _descriptors_of(inode: tuple[int, int]) -> frozenset[str]:
    """The descriptors of this process that hold the file `inode` (device, inode)."""
    held: set[str] = set()
    for entry in os.scandir(_PROC_FDS):
        with contextlib.suppress(OSError):  # closed meanwhile, or the listing's own
            stat_result = entry.stat()  # follows the link: the file the descriptor holds
            if (stat_result.st_dev, stat_result.st_ino) == inode:
                held.add(entry.name)
    return frozenset(held)


def _opened_by_storage(descriptor: str) -> bool:
    """Whether the descriptor was opened with `O_NOFOLLOW`, as every read of ours is;
    one closed meanwhile counts as ours (it cannot be the server's, which is still
    sending)."""
    try:
        with open(f'/proc/self/fdinfo/{descriptor}', encoding='ascii') as info:  # noqa: PTH123
            for line in info:
                if line.startswith('flags:'):
                    return bool(int(line.split()[1], 8) & os.O_NOFOLLOW)
    except OSError:
        return True
    return False


class _StagingFile(_OpenFile):
    """A staging file written in batches, hashed as it is written."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        super().__init__(path)
        self.digest = hashlib.sha256()
        self.written = 0
        self.durable = durable

    def create(self) -> None:
        self.fd = os.open(self.path, _CREATE_FLAGS, _FILE_MODE)

    def write(self, data: bytearray) -> None:
        """Write a batch; the caller hashes it (`digest.update`) in another thread."""
        if self.fd is None:
            raise ValueError('file is not open')
        _write_all(self.fd, data)
        if self.durable:
            # start writing the batch back now, so that the final fsync waits for the tail
            _start_writeback(self.fd, self.written, len(data))
        self.written += len(data)

    def finish(self, data: bytearray) -> None:
        """Write the last batch, fsync (when durable) and close."""
        self.write(data)
        if self.fd is not None and self.durable:
            os.fsync(self.fd)
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def create_and_finish(self, data: bytearray) -> None:
        """A body smaller than one batch: create, write, hash, fsync and close in one call."""
        self.create()
        self.digest.update(data)
        self.finish(data)

    def remove(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


# Changes are applied, and rolled back, and chat directories made, while the metadata
# store holds a writer's lock (the SQLite write lock, a PostgreSQL workspace row): they
# run in threads of their own, so that they never queue behind the staging and reading
# of other requests in the default executor while writers wait for that lock (ADR 019)
_LOCKED_WORK_THREADS = 4
_locked_work: ThreadPoolExecutor | None = None


def _locked_work_executor() -> ThreadPoolExecutor:
    global _locked_work  # noqa: PLW0603 - one pool for the process, made on first use
    if _locked_work is None:
        _locked_work = ThreadPoolExecutor(
            _LOCKED_WORK_THREADS, thread_name_prefix='chat-storage-change'
        )
    return _locked_work


async def _run_locked_work(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`asyncio.to_thread` on the threads for work done under a writer's lock."""
    call = partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_locked_work_executor(), call)


async def _through_cancellation(task: asyncio.Future[T]) -> T:
    """Await `task` to its end, even when the caller is cancelled meanwhile; the
    cancellation is raised once it is done."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled() and task.exception() is not None:
            _log.warning('work of a cancelled caller failed', exc_info=task.exception())
        raise asyncio.CancelledError
    return task.result()


class _Workers:
    """Worker-thread calls that outlive a cancelled caller, and the tasks that track them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run_to_end(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`asyncio.to_thread`, but a cancelled caller leaves the call to finish."""
        return await asyncio.shield(self.spawn(asyncio.to_thread(func, *args, **kwargs)))

    async def after(self, pending: asyncio.Future[Any] | None, func: Callable[[], None]) -> None:
        """Run `func` in a thread once `pending` is done, to the end even if cancelled."""

        async def run() -> None:
            if pending is not None:
                await asyncio.wait({pending})
            await asyncio.to_thread(func)

        await asyncio.shield(self.spawn(run()))

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks))


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _Lane:
    """Blocking calls on one resource, run in worker threads one after another.

    A cancelled await does not stop the thread it waited for: `finally_` runs its clean-up
    only once that thread is done, so a descriptor is never closed (and reused) under it.
    """

    def __init__(self, workers: _Workers) -> None:
        self._workers = workers
        self._pending: asyncio.Future[Any] | None = None

    async def run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        task = self._workers.spawn(asyncio.to_thread(func, *args, **kwargs))
        self._pending = task
        return await asyncio.shield(task)

    async def finally_(self, func: Callable[[], None]) -> None:
        await self._workers.after(self._pending, func)

    def start(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> asyncio.Task[T]:
        """Start a call without waiting for it; the caller awaits it (shielded) later."""
        task = self._workers.spawn(asyncio.to_thread(func, *args, **kwargs))
        # a caller that went away never looks at it: the failure is not worth a warning
        task.add_done_callback(_retrieve)
        self._pending = task
        return task

    def idle(self) -> bool:
        """No call of this lane is running in a worker thread."""
        return self._pending is None or self._pending.done()


async def _settled(pending: list[asyncio.Future[None]]) -> None:
    """Wait for the previous batch's write and hash."""
    try:
        for future in pending:
            await asyncio.shield(future)
    except OSError as exc:
        raise _staging_error(exc) from exc


async def _staging_call(
    lane: _Lane, func: Callable[P, None], *args: P.args, **kwargs: P.kwargs
) -> None:
    try:
        await lane.run(func, *args, **kwargs)
    except OSError as exc:
        raise _staging_error(exc) from exc


class _Step:
    """One reversible file system operation; every method blocks and runs in a thread."""

    # whether `commit` or `forget` has anything to do once the step is applied
    settles = True

    def prepare(self) -> bool:
        """Write what recovery needs into the trash; True when something was written."""
        return False

    def apply(self) -> set[Path]:
        """Make the change visible; the directories whose entries changed."""
        return set()

    def sync(self) -> None:
        """Make durable what `apply` left to the metadata commit (`PendingSync`)."""

    def rollback(self) -> set[Path]:
        """Undo `apply`; the directories whose entries changed."""
        return set()

    def commit(self) -> None:
        """Drop what `apply` kept for a rollback."""

    def forget(self) -> None:
        """Remove the sidecar and anything `prepare` left; the last step of settling."""


class _TrashStep(_Step):
    """A step that keeps a backup at `.trash/<token>` described by `.trash/<token>.json`."""

    def __init__(self, trash_dir: Path, record: dict[str, Any]) -> None:
        token = uuid4().hex
        self.backup = trash_dir / token
        self.sidecar = trash_dir / f'{token}{SIDECAR_SUFFIX}'
        self.record = record

    def write_sidecar(self) -> None:
        record = {**self.record, 'created_ns': time.time_ns()}
        fd = os.open(self.sidecar, _CREATE_FLAGS, 0o600)
        try:
            _write_all(fd, json.dumps(record, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def forget(self) -> None:
        self.sidecar.unlink(missing_ok=True)


class _SwapStep(_TrashStep):
    """Put a staged file at `target`, hard-linking the file it replaces into the trash."""

    def __init__(
        self,
        trash_dir: Path,
        record: dict[str, Any],
        source: Path,
        target: Path,
        version: bytes,
    ) -> None:
        super().__init__(trash_dir, record)
        self.source = source
        self.target = target
        self.version = version
        self.replaced = False
        # a directory a sandbox planted at the name: no hard link can name it, so `apply`
        # moves it into the trash whole (restorable until the commit, as a delete's)
        self.directory = False

    def prepare(self) -> bool:
        if not self.source.is_file() or self.source.is_symlink():
            raise FileNotFoundError(errno.ENOENT, 'staged content is missing')
        _tag_version(self.source, self.version)
        self.replaced = os.path.lexists(self.target)
        self.directory = self.replaced and stat.S_ISDIR(os.lstat(self.target).st_mode)
        self.record['replaced'] = self.replaced
        self.write_sidecar()
        if self.replaced and not self.directory:
            # the link keeps the old inode; readers that opened it go on reading it
            os.link(self.target, self.backup, follow_symlinks=False)
        return True

    def apply(self) -> set[Path]:
        if self.directory:
            self.target.rename(self.backup)
            self.source.replace(self.target)
            return {self.target.parent, self.backup.parent}
        self.source.replace(self.target)
        return {self.target.parent}

    def rollback(self) -> set[Path]:
        if not self.sidecar.exists():
            # settled meanwhile by another process under the workspace lock (a change in
            # doubt, ADR 025): what it found was put right by the rows, nothing is left
            return set()
        if self.directory:
            self.target.unlink(missing_ok=True)
            self.backup.rename(self.target)
            return {self.target.parent, self.backup.parent}
        if self.replaced:
            self.backup.replace(self.target)
        else:
            self.target.unlink(missing_ok=True)
        return {self.target.parent}

    def commit(self) -> None:
        _remove(self.backup)

    def forget(self) -> None:
        # after `prepare` alone the backup is a second link to the untouched target (or,
        # for a directory, nothing yet)
        _remove(self.backup)
        super().forget()


class _MoveToTrashStep(_TrashStep):
    """Move a file or a directory into the trash; a missing one is no change."""

    def __init__(self, trash_dir: Path, record: dict[str, Any], source: Path) -> None:
        super().__init__(trash_dir, record)
        self.source = source
        self.present = False

    def prepare(self) -> bool:
        self.present = os.path.lexists(self.source)
        if self.present:
            self.write_sidecar()
        return self.present

    def apply(self) -> set[Path]:
        if not self.present:
            return set()
        self.source.replace(self.backup)
        return {self.source.parent, self.backup.parent}

    def rollback(self) -> set[Path]:
        if not self.present:
            return set()
        self.backup.replace(self.source)
        return {self.source.parent, self.backup.parent}

    def commit(self) -> None:
        if self.present:
            _remove(self.backup)

    def forget(self) -> None:
        if self.present:
            super().forget()


class _AppendStep(_Step):
    """Append a staged file to `history.md` at the committed length, cutting any tail.

    The staged copy is removed as soon as its bytes are in `history.md`: a rollback only
    cuts the history back, so nothing is left to settle (no thread hop after the commit),
    and recovery cuts an uncommitted tail whether or not a staged copy is left (ADR 016).
    `apply` does not fsync `history.md`: `sync` does, right before the metadata commit
    that makes the bytes part of the history, in the thread that commits (ADR 019). A
    small append comes as the bytes themselves (`source`), held in memory instead of a
    staged file, and is applied on the event loop (`inline`).
    """

    settles = False

    def __init__(self, source: Path | bytes, history: Path, chat: Chat, chunk_bytes: int) -> None:
        self.source = source
        self.history = history
        self.offset = chat.history_bytes
        # the file must be the rows' history: one a put that never committed left there
        # (a crash, or a commit of unknown outcome, on any process) is not written on
        self.check = is_history_version(chat.history_revision)
        self.chunk_bytes = chunk_bytes
        # a write of a few KiB into the page cache: cheaper than a thread hop
        self.inline = isinstance(source, bytes)

    def apply(self) -> set[Path]:
        fd = _open_regular(self.history, _WRITE_FLAGS)
        try:
            if not self.check(_version_of(fd)):
                raise StoredVersionChangingError
            size = os.fstat(fd).st_size
            if size < self.offset:
                # committed bytes are gone: appending would leave a hole of zeros
                raise _UnexpectedFileError
            if size > self.offset:
                os.ftruncate(fd, self.offset)  # an uncommitted tail
            try:
                if isinstance(self.source, bytes):
                    _write_all(fd, self.source, self.offset)
                else:
                    self._copy_to(fd, self.source)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self.offset)
                raise
        finally:
            os.close(fd)
        if isinstance(self.source, Path):
            # a failure to remove it only leaves a leftover for the use case's discard
            with contextlib.suppress(OSError):
                self.source.unlink()
        return set()

    def sync(self) -> None:
        fd = _open_regular(self.history, _WRITE_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _copy_to(self, fd: int, source: Path) -> None:
        source_fd = _open_regular(source, _READ_FLAGS)
        try:
            position = self.offset
            while data := os.read(source_fd, self.chunk_bytes):
                _write_all(fd, data, position)
                position += len(data)
        finally:
            os.close(source_fd)

    def rollback(self) -> set[Path]:
        fd = _open_regular(self.history, _WRITE_FLAGS)
        try:
            os.ftruncate(fd, self.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        return set()


class _FileSystemChange:
    """The `StorageChange` of `FileSystemChatStorage`: steps that apply and settle together."""

    def __init__(
        self, workers: _Workers, trash_dir: Path, steps: list[_Step], chat_id: UUID | None
    ) -> None:
        self._workers = workers
        self._trash_dir = trash_dir
        self._steps = steps
        self._chat_id = chat_id
        self._outcome: str | None = None
        # whether a step wrote sidecars or backups into the trash (True until applied)
        self._wrote_trash = True

    def sync(self) -> None:
        if self._outcome is not None:
            raise RuntimeError(f'the change was already {self._outcome}')
        try:
            for step in self._steps:
                step.sync()
        except OSError as exc:
            raise _storage_error(exc, self._chat_id) from exc

    async def commit(self) -> None:
        if self._settle('committed'):
            return
        if not self._wrote_trash and not any(step.settles for step in self._steps):
            return  # nothing to drop, nothing to fsync: no thread hop (an append)
        try:
            await self._workers.run_to_end(self._commit)
        except OSError:
            # the metadata has committed, so has the change; recovery drops what is left
            _log.warning('backups of a committed change stay in the trash', exc_info=True)

    async def rollback(self) -> None:
        if self._settle('rolled_back'):
            return
        try:
            # to its end before the caller goes on, even a cancelled one: the caller
            # still holds the writer's lock, and a writer queued behind it must not
            # commit over the path before this puts the old bytes back (ADR 011)
            await _through_cancellation(self._workers.spawn(_run_locked_work(self._rollback)))
        except OSError as exc:
            # the sidecars stay, so that recovery can finish the rollback
            raise _storage_error(exc) from exc

    def _settle(self, outcome: str) -> bool:
        """Record the outcome; True when it was already settled that way."""
        if self._outcome == outcome:
            return True
        if self._outcome is not None:
            raise RuntimeError(f'the change was already {self._outcome}')
        self._outcome = outcome
        return False

    def apply_blocking(self) -> None:
        """Prepare and apply every step; undo them all when one fails."""
        prepared: list[_Step] = []
        applied: list[_Step] = []
        try:
            wrote_trash = False
            for step in self._steps:
                prepared.append(step)
                wrote_trash = step.prepare() or wrote_trash
            self._wrote_trash = wrote_trash
            if wrote_trash:
                # sidecars and backups are durable before anything visible changes
                _fsync_dir(self._trash_dir)
            directories: set[Path] = set()
            for step in self._steps:
                directories |= step.apply()
                applied.append(step)
            self._fsync(directories)
        except BaseException:
            self._undo(prepared, applied)
            raise

    def _undo(self, prepared: list[_Step], applied: list[_Step]) -> None:
        try:
            directories: set[Path] = set()
            for step in reversed(applied):
                directories |= step.rollback()
            self._fsync(directories)
            for step in prepared:
                step.forget()
        except OSError:
            _log.exception('a failed change could not be undone; recovery must finish it')

    def _rollback(self) -> None:
        directories: set[Path] = set()
        for step in reversed(self._steps):
            directories |= step.rollback()
        self._fsync(directories)
        self._forget()

    def _commit(self) -> None:
        for step in self._steps:
            step.commit()
        self._forget()

    def _forget(self) -> None:
        for step in self._steps:
            step.forget()
        if self._wrote_trash:
            # a settled sidecar must not outlive a crash and be read as pending (an
            # append writes none)
            _fsync_dir(self._trash_dir)

    def _fsync(self, directories: Iterable[Path]) -> None:
        for directory in sorted(directories):
            _fsync_dir(directory)


def _make_chat_dir(chat_dir: Path, history: Path) -> None:
    chat_dir.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(history):
        fd = os.open(history, _CREATE_FLAGS, _FILE_MODE)
        os.close(fd)


class _ChatDirectorySync:
    """The `PendingSync` of `ensure_chat`: the new entries, fsynced before the row commits."""

    def __init__(self, fsync_entries: Callable[[], None], chat_id: UUID) -> None:
        self._fsync_entries = fsync_entries
        self._chat_id = chat_id

    def sync(self) -> None:
        try:
            self._fsync_entries()
        except OSError as exc:
            raise _storage_error(exc, self._chat_id) from exc


class FileSystemChatStorage:
    """`ChatStorage` on a local file system; see the module docstring and ADR 011."""

    def __init__(
        self,
        data_dir: Path,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        owner: str | None = None,
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError('chunk_bytes must be positive')
        if owner is not None and not _OWNER.fullmatch(owner):
            raise ValueError('not an owner id')
        # recovery leaves the entries of a live owner alone (see adapter/file_maintenance.py)
        self.owner = owner or new_owner_id()
        self.data_dir = data_dir
        self.staging_dir = data_dir / STAGING_DIR_NAME
        self.trash_dir = data_dir / TRASH_DIR_NAME
        self.workspaces_dir = data_dir / WORKSPACES_DIR_NAME
        self._chunk_bytes = chunk_bytes
        self._workers = _Workers()
        # (chat directory, history.md) by (workspace id, chat id): paths depend on the
        # ids alone, and building them was a good part of a small read (ADR 019)
        self._chat_paths: dict[tuple[UUID, UUID], tuple[Path, Path]] = {}
        # small stages that are not durable, by token, until appended or discarded
        self._held: dict[str, bytes] = {}
        # directories above the chat directories whose entry in their parent this process
        # has fsynced: a chat made in a workspace whose `chats/` is in here needs only
        # its own directory and `chats/` fsynced, not the two levels above (ADR 019)
        self._synced_dirs: set[Path] = set()
        # a server that sends by path can be handed `/proc/self/fd/<fd>` (Linux)
        self._send_by_descriptor = Path(_PROC_FDS).is_dir()
        # start-up only: the service areas live beside, never inside, the chat directories
        for directory in (self.staging_dir, self.trash_dir, self.workspaces_dir):
            directory.mkdir(parents=True, exist_ok=True)

    # --- paths -----------------------------------------------------------------------

    def workspace_dir(self, workspace_id: UUID) -> Path:
        return self.workspaces_dir / str(workspace_id)

    def chat_dir(self, chat: Chat) -> Path:
        return self._paths_of(chat)[0]

    def history_path(self, chat: Chat) -> Path:
        return self._paths_of(chat)[1]

    def _paths_of(self, chat: Chat) -> tuple[Path, Path]:
        key = (chat.workspace_id, chat.chat_id)
        paths = self._chat_paths.get(key)
        if paths is None:
            if len(self._chat_paths) >= _CHAT_PATHS_KEPT:
                self._chat_paths.clear()
            chat_dir = self.workspace_dir(chat.workspace_id) / CHATS_DIR_NAME / str(chat.chat_id)
            paths = self._chat_paths[key] = (chat_dir, chat_dir / HISTORY_FILE_NAME)
        return paths

    def attachment_path(self, chat: Chat, name: ChatAttachmentName) -> Path:
        return self.chat_dir(chat) / name.value

    def _staging_path(self, staged: StagedContent) -> Path:
        # a token is ours (uuid4 hex); anything else must not address a path
        if not _TOKEN.fullmatch(staged.token):
            raise ValueError('not a staging token')
        if staged.token in self._held:
            raise ValueError('content staged without durability can only be appended')
        return self.staging_dir / staged.token

    def _new_token(self) -> str:
        return self.owner + uuid4().hex[: 32 - OWNER_ID_LENGTH]

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()

    # --- chats -----------------------------------------------------------------------

    async def ensure_chat(self, chat: Chat) -> PendingSync:
        # on the event loop: a few directory operations, cheaper than a thread hop under
        # the writer's lock; the fsyncs are left to the commit's thread (ADR 019)
        chat_dir, history = self._paths_of(chat)
        try:
            _make_chat_dir(chat_dir, history)
        except OSError as exc:
            raise _storage_error(exc, chat.chat_id) from exc
        return _ChatDirectorySync(partial(self._sync_chat_dir, chat_dir), chat.chat_id)

    def _sync_chat_dir(self, chat_dir: Path) -> None:
        # the entries `history.md` and the chat directory: always
        _fsync_dir(chat_dir)
        _fsync_dir(chat_dir.parent)
        # the entries of `chats/` and of the workspace directory: once per process
        # (another process, or this one before a restart, may have made them unsynced)
        directory = chat_dir.parent
        while directory.parent != self.data_dir:
            if directory not in self._synced_dirs:
                _fsync_dir(directory.parent)
                if len(self._synced_dirs) >= _SYNCED_DIRS_KEPT:
                    self._synced_dirs.clear()
                self._synced_dirs.add(directory)
            directory = directory.parent

    # --- staging ---------------------------------------------------------------------

    async def stage(
        self, content: ByteStream, *, limit_bytes: int, durable: bool = True
    ) -> StagedContent:
        staging = _StagingFile(self.staging_dir / self._new_token(), durable=durable)
        lane = _Lane(self._workers)
        try:
            size = await self._write_stream(content, limit_bytes, staging, lane)
        except BaseException:
            await lane.finally_(staging.remove)
            raise
        return StagedContent(
            token=staging.path.name,
            size_bytes=size,
            sha256=staging.digest.hexdigest(),
        )

    async def _write_stream(
        self,
        content: ByteStream,
        limit_bytes: int,
        staging: _StagingFile,
        lane: _Lane,
    ) -> int:
        """Write the stream in batches of about `chunk_bytes`; the number of bytes written.

        Only our own disk calls are translated: an OSError of the stream (a client that
        went away) is not a disk error.
        """
        hashing = _Lane(self._workers)
        size = 0
        batch = bytearray()
        written: list[asyncio.Future[None]] = []
        created = False
        async for chunk in content:
            size += len(chunk)
            if size > limit_bytes:
                # stop reading: the rest of the stream is never pulled
                raise ContentLimitExceededError(limit_bytes)
            batch += chunk
            if len(batch) >= self._chunk_bytes:
                full, batch = batch, bytearray()
                if not created:
                    await _staging_call(lane, staging.create)
                    created = True
                await _settled(written)
                # the next batch arrives while this one is written and hashed, each in a
                # thread of its own (both release the GIL); still one pass over the bytes
                written = [
                    lane.start(staging.write, full),
                    hashing.start(staging.digest.update, full),
                ]
        await _settled(written)
        if not created:
            if not staging.durable and len(batch) <= HELD_STAGE_BYTES:
                # most history appends: kept in memory until copied into place
                staging.digest.update(batch)
                self._held[staging.path.name] = bytes(batch)
                return size
            # small files: one worker-thread call (ADR 019)
            await _staging_call(lane, staging.create_and_finish, batch)
            return size
        last_hash = hashing.start(staging.digest.update, batch)
        await _staging_call(lane, staging.finish, batch)
        await asyncio.shield(last_hash)
        return size

    async def discard(self, staged: StagedContent) -> None:
        if self._held.pop(staged.token, None) is not None:
            return
        path = self._staging_path(staged)
        try:
            await self._workers.run_to_end(path.unlink, missing_ok=True)
        except OSError as exc:
            raise _staging_error(exc) from exc

    # --- changes ---------------------------------------------------------------------

    async def put_attachment(
        self,
        chat: Chat,
        name: ChatAttachmentName,
        staged: StagedContent,
    ) -> StorageChange:
        target = self.attachment_path(chat, name)
        record = self._record('put_attachment', target, chat, name=name.value)
        record |= {'sha256': staged.sha256, 'size_bytes': staged.size_bytes}
        version = attachment_version(staged.sha256)
        step = _SwapStep(self.trash_dir, record, self._staging_path(staged), target, version)
        return await self._apply([step], chat.chat_id, below=target)

    async def delete_attachments(
        self,
        chat: Chat,
        names: list[ChatAttachmentName],
    ) -> StorageChange:
        steps: list[_Step] = []
        for name in dict.fromkeys(names):
            source = self.attachment_path(chat, name)
            record = self._record('delete_attachment', source, chat, name=name.value)
            steps.append(_MoveToTrashStep(self.trash_dir, record, source))
        return await self._apply(steps, chat.chat_id, below=self.history_path(chat))

    async def put_history(self, chat: Chat, staged: StagedContent) -> StorageChange:
        target = self.history_path(chat)
        record = self._record('put_history', target, chat)
        record |= {
            'history_revision': chat.history_revision,
            'sha256': staged.sha256,
            'size_bytes': staged.size_bytes,
        }
        version = history_version(chat.history_revision + 1)
        step = _SwapStep(self.trash_dir, record, self._staging_path(staged), target, version)
        return await self._apply([step], chat.chat_id, below=target)

    async def append_history(self, chat: Chat, staged: StagedContent) -> StorageChange:
        held = self._held.pop(staged.token, None)
        step = _AppendStep(
            self._staging_path(staged) if held is None else held,
            self.history_path(chat),
            chat,
            self._chunk_bytes,
        )
        return await self._apply([step], chat.chat_id, below=self.history_path(chat))

    async def delete_chat(self, chat: Chat) -> StorageChange:
        source = self.chat_dir(chat)
        record = self._record('delete_chat', source, chat)
        # the chat directory itself may be a link (moving a link is safe); not its parents
        return await self._apply(
            [_MoveToTrashStep(self.trash_dir, record, source)], chat.chat_id, below=source
        )

    async def delete_workspace(self, workspace_id: UUID) -> StorageChange:
        source = self.workspace_dir(workspace_id)
        record = {
            'operation': 'delete_workspace',
            'path': self._relative(source),
            'workspace_id': str(workspace_id),
            'owner': self.owner,
        }
        return await self._apply([_MoveToTrashStep(self.trash_dir, record, source)], None)

    def _record(self, operation: str, path: Path, chat: Chat, **extra: str) -> dict[str, Any]:
        return {
            'operation': operation,
            'path': self._relative(path),
            'workspace_id': str(chat.workspace_id),
            'chat_id': str(chat.chat_id),
            'owner': self.owner,
            **extra,
        }

    async def _refuse_symlinked_dirs(self, path: Path, chat_id: UUID) -> None:
        try:
            await self._workers.run_to_end(_refuse_symlinked_dirs, self.data_dir, path)
        except OSError as exc:
            raise _storage_error(exc, chat_id) from exc

    async def _apply(
        self, steps: list[_Step], chat_id: UUID | None, *, below: Path | None = None
    ) -> StorageChange:
        """Apply `steps` in one worker-thread call (on the loop when they are all small
        appends), after checking that no directory between the data directory and
        `below` is a symlink."""
        change = _FileSystemChange(self._workers, self.trash_dir, steps, chat_id)

        def apply() -> None:
            if below is not None:
                _refuse_symlinked_dirs(self.data_dir, below)
            change.apply_blocking()

        if all(isinstance(step, _AppendStep) and step.inline for step in steps):
            try:
                apply()
            except OSError as exc:
                raise _storage_error(exc, chat_id) from exc
            return change
        task = self._workers.spawn(_run_locked_work(apply))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # the caller never gets the change to settle: it is undone once the thread is
            # done, before the caller (and the writer's lock it holds) goes on
            await _through_cancellation(
                self._workers.spawn(self._roll_back_when_applied(task, change))
            )
            raise
        except OSError as exc:
            raise _storage_error(exc, chat_id) from exc
        return change

    async def _roll_back_when_applied(
        self,
        task: asyncio.Future[None],
        change: _FileSystemChange,
    ) -> None:
        await asyncio.wait({task})
        if task.cancelled() or task.exception() is not None:
            return
        try:
            await change.rollback()
        except DomainError:
            _log.exception('a change of a cancelled request could not be rolled back')

    async def history_in_doubt(self, chat: Chat) -> bool:
        """Whether `history.md` is a put newer than `chat`: one that never committed, when
        `chat` was read under the workspace lock."""
        # unmarked, or missing: nothing a put left
        return not is_history_version(chat.history_revision)(version_at(self.history_path(chat)))

    async def drop_stale_mark(self, chat: Chat, record: ChatFile | None = None) -> bool:
        """Drop the version mark of `history.md` (no `record`) or of the record's file when
        it names another version than `chat` or `record`, read under the workspace lock:
        no write is in flight then, and pending changes have been settled, so the rows do
        not explain it (a sandbox moved, copied or set it). The file is then read as a
        sandbox's. Whether a mark was dropped."""
        if record is None:
            path = self.history_path(chat)
            check = is_history_version(chat.history_revision)
        else:
            path = self.attachment_path(chat, record.name)
            check = is_attachment_version(record.sha256)
        if check(version_at(path)):
            return False
        try:
            os.removexattr(path, VERSION_XATTR, follow_symlinks=False)
        except OSError:
            return False
        _log.warning('chat %s: a version mark no write explains was dropped', chat.chat_id)
        return True

    # --- reads -----------------------------------------------------------------------

    def read_history(self, chat: Chat) -> AsyncGenerator[bytes, None]:
        # bytes past `history_bytes` are an uncommitted tail
        check = is_history_version(chat.history_revision)
        return self._read(self.history_path(chat), chat.chat_id, 0, chat.history_bytes, check)

    def read_attachment(
        self,
        chat: Chat,
        name: ChatAttachmentName,
        byte_range: ByteRange | None = None,
        *,
        record: ChatFile | None = None,
    ) -> AsyncGenerator[bytes, None]:
        path = self.attachment_path(chat, name)
        check = None if record is None else is_attachment_version(record.sha256)
        if byte_range is not None:
            return self._read(path, chat.chat_id, byte_range.first, byte_range.last + 1, check)
        # the record's size: bytes a sandbox added past it are not the record's file
        stop = None if record is None else record.size_bytes
        return self._read(path, chat.chat_id, 0, stop, check)

    async def sendable_attachment(
        self, chat: Chat, name: ChatAttachmentName, *, record: ChatFile | None = None
    ) -> _SentDescriptor | None:
        """The attachment opened now, named by `/proc/self/fd/<fd>` (ADR 019).

        Opened like a read (`O_NOFOLLOW`, regular files only): a symlink or anything else a
        sandbox plants in the chat directory is never what gets sent, and a later replace
        or delete of the name does not change what the path names.
        """
        if not self._send_by_descriptor:
            return None
        path = self.attachment_path(chat, name)
        check = None if record is None else is_attachment_version(record.sha256)
        await self._refuse_symlinked_dirs(path, chat.chat_id)
        try:
            fd, size = await self._workers.run_to_end(self._open_for_sending, path, check)
        except OSError as exc:
            raise _storage_error(exc, chat.chat_id) from exc
        return _SentDescriptor(fd, size)

    @staticmethod
    def _open_for_sending(path: Path, check: VersionCheck | None) -> tuple[int, int]:
        fd = _open_checked(path, check)
        try:
            return fd, os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise

    async def _read(
        self,
        path: Path,
        chat_id: UUID,
        start: int,
        stop: int | None,
        check: VersionCheck | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Bytes `start` to `stop` (exclusive; None: to the end) of one opened version
        (with `check`: one it accepts, else `StoredVersionChangingError` on the first chunk)."""
        file = _OpenFile(path, check)
        lane = _Lane(self._workers)
        try:
            position = start
            opened = False
            while stop is None or position < stop or not opened:
                size = (
                    self._chunk_bytes if stop is None else min(self._chunk_bytes, stop - position)
                )
                try:
                    if opened:
                        data = await lane.run(file.pread, size, position)
                    else:
                        # opened once: a concurrent replace never mixes two versions
                        last = stop is not None and position + size >= stop
                        if last and size <= INLINE_READ_BYTES:
                            # all of it in one small read: from the page cache that costs
                            # less on the event loop than a hop to a thread (ADR 019)
                            data = file.open_and_pread(
                                size, position, last=True, root=self.data_dir
                            )
                        else:
                            data = await lane.run(
                                file.open_and_pread, size, position, last=last, root=self.data_dir
                            )
                        opened = True
                except OSError as exc:
                    raise _storage_error(exc, chat_id) from exc
                if not data:
                    break
                position += len(data)
                yield data
                if file.fd is None:  # closed by `open_and_pread`: that was all
                    break
        finally:
            if file.fd is not None or not lane.idle():
                await lane.finally_(file.close)

    # --- operations ------------------------------------------------------------------

    async def is_writable(self) -> bool:
        try:
            await self._workers.run_to_end(self._probe)
        except OSError:
            return False
        return True

    def _probe(self) -> None:
        path = self.staging_dir / f'probe-{self._new_token()}'
        fd = os.open(path, _CREATE_FLAGS, 0o600)
        try:
            _write_all(fd, b'probe')
            os.fsync(fd)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    async def close(self) -> None:
        """Wait for clean-ups still running for requests that were cancelled."""
        await self._workers.drain()

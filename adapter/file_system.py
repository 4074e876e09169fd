"""What the blob store and the chat views share: the layout of the data directory, open
flags, and the mapping of `OSError` to domain errors.

Layout under the data directory:

- `.blobs/<first two hex digits>/<blob id hex>`: the immutable blobs, mode 0o444;
- `.blobs/tmp/<uuid hex>`: names being staged for a chat directory and directories being
  removed; whatever is left there after a crash is garbage like an unnamed blob;
- `workspaces/<workspace_id>/chats/<chat_id>/`: the chat directories, a view of the rows.
"""

import ctypes
import ctypes.util
import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from domain.error import (
    DomainError,
    InsufficientStorageError,
    ServiceUnavailableError,
    StoredContentMissingError,
)

BLOBS_DIR_NAME = '.blobs'
TMP_DIR_NAME = 'tmp'
WORKSPACES_DIR_NAME = 'workspaces'
CHATS_DIR_NAME = 'chats'
DEFAULT_CHUNK_BYTES = 1024 * 1024
# blobs and the files of a view: readable by a sandbox under another uid, written by none
FILE_MODE = 0o444
# the chat directory's history.md is written by the service only, and extended in place
HISTORY_MODE = 0o644
DIR_MODE = 0o755

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# ENXIO: a FIFO with no reader, opened for writing without blocking
_MISSING = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR, errno.ENXIO})
# O_NOFOLLOW: a symlink never leads us out of the data directory. O_NONBLOCK: opening a
# FIFO planted by a sandbox must not hang a worker thread; regular files ignore it.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnexpectedFileError(OSError):
    """The path holds something other than a regular file."""

    def __init__(self) -> None:
        super().__init__(errno.ENOENT, 'not a regular file')


def storage_error(exc: OSError) -> DomainError:
    """The domain error of a failed disk call; the chained OSError keeps errno and path
    for the log."""
    if exc.errno in _DISK_FULL:
        return InsufficientStorageError()
    if exc.errno in _MISSING:
        return StoredContentMissingError()
    return ServiceUnavailableError()


def staging_error(exc: OSError) -> DomainError:
    """The domain error of a failed write of new content (nothing can be missing there)."""
    if exc.errno in _DISK_FULL:
        return InsufficientStorageError()
    return ServiceUnavailableError()


def blob_relative_path(blob_id: UUID) -> str:
    """The blob's path relative to the data directory."""
    name = blob_id.hex
    return f'{BLOBS_DIR_NAME}/{name[:2]}/{name}'


def parse_hex_id(name: str) -> UUID | None:
    """The id a blob or staging name spells (32 lower-case hex digits), else None."""
    if len(name) != 32:  # noqa: PLR2004 - the length of a UUID in hex
        return None
    try:
        parsed = UUID(hex=name)
    except ValueError:
        return None
    return parsed if parsed.hex == name else None


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def digest_of(fd: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[int, str]:
    """Size and sha256 of what is left to read of `fd`."""
    digest, size = hashlib.sha256(), 0
    while chunk := os.read(fd, chunk_bytes):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def fsync_dir(path: Path | str, dir_fd: int | None = None) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular(path: Path | str, flags: int, dir_fd: int | None = None) -> int:
    """Open `path` (never through a symlink); `UnexpectedFileError` unless a regular file."""
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise UnexpectedFileError
    return fd


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


# starts writing a batch back as soon as it is written, so that the final fsync of a large
# blob waits only for its tail
start_writeback = _load_sync_file_range()

"""Descriptors into the chat directories of the data directory, opened with `O_NOFOLLOW`:
whatever a sandbox plants where a directory of ours belongs (a symlink, a file) is
replaced or removed, never followed."""

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

from adapter.file_system import (
    BLOBS_DIR_NAME,
    CHATS_DIR_NAME,
    DIR_FLAGS,
    DIR_MODE,
    TMP_DIR_NAME,
    WORKSPACES_DIR_NAME,
)

# what opening a directory with O_NOFOLLOW meets where a symlink or a file is planted
_NOT_A_DIRECTORY = frozenset({errno.ELOOP, errno.ENOTDIR})
# no directory of ours is at the name
ABSENT = _NOT_A_DIRECTORY | {errno.ENOENT}


def _open_dir(parent_fd: int, name: str, *, create: bool) -> int:
    """Open the directory `name` in `parent_fd`, never through a symlink.

    With `create`, a missing directory is made, and whatever else is at the name (a
    symlink, a file) is replaced by one; without, `FileNotFoundError` or `NotADirectoryError`.
    """
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if not create or exc.errno not in _NOT_A_DIRECTORY:
            raise
        os.unlink(name, dir_fd=parent_fd)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


def remove_entry(name: str, dir_fd: int) -> None:
    """Remove the file, link or tree at `name` in `dir_fd`; a missing one is no error.

    `shutil.rmtree` with `dir_fd` works through descriptors: a symlink inside the tree is
    removed, never followed.
    """
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except IsADirectoryError:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(name, dir_fd=dir_fd)


class Directories:
    """Descriptors of the data directory, `.blobs/tmp` and a chat directory, for one call."""

    def __init__(self, data_dir: Path) -> None:
        self._fds: list[int] = []
        self.data = self._keep(os.open(data_dir, DIR_FLAGS & ~os.O_NOFOLLOW))
        try:
            tmp = os.open(f'{BLOBS_DIR_NAME}/{TMP_DIR_NAME}', DIR_FLAGS, dir_fd=self.data)
        except BaseException:
            self.close()
            raise
        self.tmp = self._keep(tmp)
        try:
            workspaces = os.open(WORKSPACES_DIR_NAME, DIR_FLAGS, dir_fd=self.data)
        except BaseException:
            self.close()
            raise
        self.workspaces = self._keep(workspaces)

    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def workspace(self, workspace_id: UUID, *, create: bool = False) -> int:
        return self._keep(_open_dir(self.workspaces, str(workspace_id), create=create))

    def chats(self, workspace_id: UUID, *, create: bool = False) -> int:
        """The directory of the workspace's chat directories."""
        workspace = self.workspace(workspace_id, create=create)
        return self._keep(_open_dir(workspace, CHATS_DIR_NAME, create=create))

    def chat(self, workspace_id: UUID, chat_id: UUID, *, create: bool = False) -> int:
        chats = self.chats(workspace_id, create=create)
        return self._keep(_open_dir(chats, str(chat_id), create=create))

    def close(self) -> None:
        for fd in reversed(self._fds):
            os.close(fd)
        self._fds.clear()


@contextlib.contextmanager
def open_directories(data_dir: Path) -> Iterator[Directories]:
    directories = Directories(data_dir)
    try:
        yield directories
    finally:
        directories.close()

"""A chat directory's `history.md`: extended in place at its end, or written anew in
`.blobs/tmp` and renamed into place."""

import contextlib
import os
import stat
from pathlib import Path
from typing import Protocol
from uuid import UUID, uuid4

from adapter.chat_directory import open_directories, remove_entry
from adapter.file_system import (
    BLOBS_DIR_NAME,
    CREATE_FLAGS,
    HISTORY_MODE,
    TMP_DIR_NAME,
    WRITE_FLAGS,
    write_all,
)
from domain.chat import HISTORY_FILE_NAME
from usecase.store_ports import HistoryView


class HistoryWrite(Protocol):
    """Writes the next batch of a history's bytes; `last` says it is the final one."""

    def __call__(self, data: bytes, *, last: bool) -> None: ...


class ShownHistory:
    """The `history.md` of a chat directory, opened to be extended at its end."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.fd: int | None = None
        self.position = self.found = 0

    def open(self, workspace_id: UUID, chat_id: UUID) -> int | None:
        """Its size; None when it is not a regular file (or missing)."""
        with open_directories(self.data_dir) as directories:
            try:
                chat = directories.chat(workspace_id, chat_id)
                self.fd = os.open(HISTORY_FILE_NAME, WRITE_FLAGS, dir_fd=chat)
            except OSError:
                return None
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            return None
        self.position = self.found = os.fstat(self.fd).st_size
        return self.position

    def write(self, data: bytes, *, last: bool) -> None:
        """Write at the end as it was found; `last` closes the file too (one call). A
        write that fails (a full disk) cuts the file back to what it held."""
        if self.fd is None:
            raise ValueError('file is not open')
        view = memoryview(data)
        try:
            while view:
                written = os.pwrite(self.fd, view, self.position)
                self.position += written
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.found)
            raise
        if last:
            self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def extend_with(
    data_dir: Path, workspace_id: UUID, chat_id: UUID, history: HistoryView, tail: bytes
) -> bool:
    """Extend a `history.md` that holds the history up to `history.boundaries[0]` with
    `tail` (the rest of it); True when it then holds the history."""
    shown = ShownHistory(data_dir)
    try:
        size = shown.open(workspace_id, chat_id)
        if size == history.boundaries[0]:
            shown.write(tail, last=True)
        return size in {history.boundaries[0], history.size_bytes}
    finally:
        shown.close()


class StagedHistory:
    """A new `history.md` written in `.blobs/tmp`, renamed into its chat directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / BLOBS_DIR_NAME / TMP_DIR_NAME / uuid4().hex
        self.data_dir = data_dir
        self.fd: int | None = None

    def create(self) -> None:
        self.fd = os.open(self.path, CREATE_FLAGS, HISTORY_MODE)

    def write(self, data: bytes, *, last: bool) -> None:  # noqa: ARG002 - closed on publish
        if self.fd is None:
            raise ValueError('file is not open')
        write_all(self.fd, data)

    def publish(self, workspace_id: UUID, chat_id: UUID) -> None:
        if self.fd is None:
            raise ValueError('file is not open')
        fd, self.fd = self.fd, None
        os.close(fd)
        with open_directories(self.data_dir) as directories:
            chat = directories.chat(workspace_id, chat_id, create=True)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(
                    os.stat(HISTORY_FILE_NAME, dir_fd=chat, follow_symlinks=False).st_mode
                ):
                    remove_entry(HISTORY_FILE_NAME, chat)
            os.rename(
                self.path.name, HISTORY_FILE_NAME, src_dir_fd=directories.tmp, dst_dir_fd=chat
            )

    def remove(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

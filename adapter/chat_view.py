"""The chat directories `<data>/<workspace_id>/<chat_id>/` as a view of the rows.

An attachment is a hard link to its blob; `history.md` a file written whole or extended
at its end (`adapter.history_file`). A sandbox mounts a chat directory and may plant
anything in it (a symlink, a directory, a FIFO, a symlink in place of the directory
itself), so every call works through directory descriptors opened with `O_NOFOLLOW`:
nothing a sandbox plants leads a read or a write out of the data directory. Every change
is staged in `.blobs/tmp` and renamed into place, so a name is always either its old or
its new file, and nothing of the service's own is ever left in a chat directory. Nothing
is fsynced: after a crash the views are rebuilt from the rows.
"""

import contextlib
import hashlib
import os
import stat
from collections.abc import AsyncIterable, Callable, Mapping
from pathlib import Path
from typing import ParamSpec, TypeVar
from uuid import UUID, uuid4

import anyio
import anyio.to_thread

from adapter.chat_directory import ABSENT, open_directories, remove_entry
from adapter.file_system import (
    BLOBS_DIR_NAME,
    CHATS_DIR_NAME,
    CREATE_FLAGS,
    DEFAULT_CHUNK_BYTES,
    HISTORY_MODE,
    READ_FLAGS,
    TMP_DIR_NAME,
    WORKSPACES_DIR_NAME,
    blob_relative_path,
    digest_of,
    open_regular,
    storage_error,
)
from adapter.history_file import HistoryWrite, ShownHistory, StagedHistory, extend_with
from domain.chat import HISTORY_FILE_NAME
from usecase.store_ports import HistoryView

T = TypeVar('T')
P = ParamSpec('P')


def _check_name(name: str) -> None:
    if not name or name in {'.', '..'} or '/' in name:
        raise ValueError('not a file name')


class ChatViews:
    """`ChatViews` on a local file system; see the module docstring."""

    def __init__(self, data_dir: Path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        if chunk_bytes < 1:
            raise ValueError('chunk_bytes must be positive')
        self.data_dir = data_dir.absolute()
        self._chunk_bytes = chunk_bytes
        # start-up only
        (self.data_dir / BLOBS_DIR_NAME / TMP_DIR_NAME).mkdir(parents=True, exist_ok=True)
        (self.data_dir / WORKSPACES_DIR_NAME).mkdir(exist_ok=True)

    def chat_dir(self, workspace_id: UUID, chat_id: UUID) -> Path:
        return (
            self.data_dir / WORKSPACES_DIR_NAME / str(workspace_id) / CHATS_DIR_NAME / str(chat_id)
        )

    async def _run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def call() -> T:
            return func(*args, **kwargs)

        try:
            return await anyio.to_thread.run_sync(call)
        except OSError as exc:
            raise storage_error(exc) from exc

    # --- changes ----------------------------------------------------------------------

    async def ensure_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        await self._run(self._ensure_chat, workspace_id, chat_id)

    def _ensure_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        with open_directories(self.data_dir) as directories:
            chat = directories.chat(workspace_id, chat_id, create=True)
            _create_history(chat)

    async def show_file(self, workspace_id: UUID, chat_id: UUID, name: str, blob_id: UUID) -> None:
        _check_name(name)
        await self._run(self._show_file, workspace_id, chat_id, name, blob_id)

    def _show_file(self, workspace_id: UUID, chat_id: UUID, name: str, blob_id: UUID) -> None:
        with open_directories(self.data_dir) as directories:
            chat = directories.chat(workspace_id, chat_id, create=True)
            _create_history(chat)
            blob = blob_relative_path(blob_id)
            shown = os.stat(blob, dir_fd=directories.data, follow_symlinks=False)
            try:
                present = os.stat(name, dir_fd=chat, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if (present.st_dev, present.st_ino) == (shown.st_dev, shown.st_ino):
                    return
                if stat.S_ISDIR(present.st_mode):
                    remove_entry(name, chat)
            staged = uuid4().hex
            os.link(
                blob,
                staged,
                src_dir_fd=directories.data,
                dst_dir_fd=directories.tmp,
                follow_symlinks=False,
            )
            try:
                os.rename(staged, name, src_dir_fd=directories.tmp, dst_dir_fd=chat)
            finally:
                # a rename between two links of one inode changes nothing and leaves both
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staged, dir_fd=directories.tmp)

    async def hide_file(self, workspace_id: UUID, chat_id: UUID, name: str) -> None:
        _check_name(name)
        await self._run(self._hide_file, workspace_id, chat_id, name)

    def _hide_file(self, workspace_id: UUID, chat_id: UUID, name: str) -> None:
        with open_directories(self.data_dir) as directories:
            try:
                chat = directories.chat(workspace_id, chat_id)
            except OSError as exc:
                if exc.errno not in ABSENT:
                    raise
                return  # no directory of ours holds the name
            remove_entry(name, chat)

    async def show_history(self, workspace_id: UUID, chat_id: UUID, history: HistoryView) -> bool:
        if history.extend and await self._extend_history(workspace_id, chat_id, history):
            return True
        if not history.whole:
            return False
        staged = StagedHistory(self.data_dir)
        try:
            await self._run(staged.create)
            await self._write_batched(staged.write, history.chunks_from(0))
            await self._run(staged.publish, workspace_id, chat_id)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(staged.remove)
        return True

    async def _extend_history(
        self, workspace_id: UUID, chat_id: UUID, history: HistoryView
    ) -> bool:
        """Extend a `history.md` that holds the history up to a boundary, in place;
        False when there is none such (then it is written anew)."""
        if not history.whole:
            # the end of a history, in memory: looked at and extended in one call
            tail = b''.join([chunk async for chunk in history.chunks_from(history.boundaries[0])])
            return await self._run(extend_with, self.data_dir, workspace_id, chat_id, history, tail)
        shown = ShownHistory(self.data_dir)
        try:
            size = await self._run(shown.open, workspace_id, chat_id)
            if size not in history.boundaries:
                return False
            if size < history.size_bytes:
                await self._write_batched(shown.write, history.chunks_from(size))
            return True
        finally:
            if shown.fd is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(shown.close)

    async def _write_batched(self, write: HistoryWrite, chunks: AsyncIterable[bytes]) -> None:
        """The chunks in batches of about `chunk_bytes`; the last call is told so."""
        batch = bytearray()
        async for chunk in chunks:
            if len(batch) >= self._chunk_bytes:
                await self._run(write, bytes(batch), last=False)
                batch.clear()
            batch += chunk
        await self._run(write, bytes(batch), last=True)

    async def remove_chat(self, workspace_id: UUID, chat_id: UUID) -> None:
        await self._run(self._remove, workspace_id, chat_id)

    async def remove_workspace(self, workspace_id: UUID) -> None:
        await self._run(self._remove, workspace_id, None)

    def _remove(self, workspace_id: UUID, chat_id: UUID | None) -> None:
        """Move the directory into `.blobs/tmp`, so that it vanishes at once, then remove
        it there (a crash leaves it to garbage collection)."""
        with open_directories(self.data_dir) as directories:
            if chat_id is None:
                parent, name = directories.workspaces, str(workspace_id)
            else:
                try:
                    parent = directories.chats(workspace_id)
                except OSError as exc:
                    if exc.errno not in ABSENT:
                        raise
                    return  # no directory of ours holds the chat
                name = str(chat_id)
            removed = uuid4().hex
            try:
                os.rename(name, removed, src_dir_fd=parent, dst_dir_fd=directories.tmp)
            except FileNotFoundError:
                return
            remove_entry(removed, directories.tmp)

    # --- reads ------------------------------------------------------------------------

    async def differs(
        self,
        workspace_id: UUID,
        chat_id: UUID,
        files: Mapping[str, UUID],
        history: AsyncIterable[bytes],
    ) -> list[str]:
        digest, size = hashlib.sha256(), 0
        async for chunk in history:
            digest.update(chunk)
            size += len(chunk)
        committed = (size, digest.hexdigest())
        return await self._run(self._differs, workspace_id, chat_id, dict(files), committed)

    def _differs(
        self,
        workspace_id: UUID,
        chat_id: UUID,
        files: dict[str, UUID],
        committed: tuple[int, str],
    ) -> list[str]:
        with open_directories(self.data_dir) as directories:
            try:
                chat = directories.chat(workspace_id, chat_id)
            except OSError as exc:
                if exc.errno in ABSENT:
                    return ['.']
                raise
            with os.scandir(chat) as entries:
                present = {entry.name for entry in entries}
            out_of_step = {name for name in present - files.keys() if name != HISTORY_FILE_NAME}
            for name, blob_id in files.items():
                if not _is_link_of(directories.data, blob_relative_path(blob_id), chat, name):
                    out_of_step.add(name)
            if _history_of(chat) != committed:
                out_of_step.add(HISTORY_FILE_NAME)
            return sorted(out_of_step)

    async def chats(self) -> list[tuple[UUID, UUID]]:
        return await self._run(self._chats)

    def _chats(self) -> list[tuple[UUID, UUID]]:
        found: list[tuple[UUID, UUID]] = []
        with open_directories(self.data_dir) as directories:
            for workspace_id in _uuid_directories(directories.workspaces):
                try:
                    workspace = directories.chats(workspace_id)
                except OSError:
                    continue  # removed or replaced meanwhile
                found.extend((workspace_id, chat_id) for chat_id in _uuid_directories(workspace))
        return sorted(found)


def _history_of(chat_fd: int) -> tuple[int, str] | None:
    """Size and sha256 of the chat directory's `history.md`; None unless a regular file."""
    try:
        fd = open_regular(HISTORY_FILE_NAME, READ_FLAGS, dir_fd=chat_fd)
    except OSError:
        return None
    try:
        return digest_of(fd)
    finally:
        os.close(fd)


def _uuid_directories(dir_fd: int) -> list[UUID]:
    """The directories (not symlinks) in `dir_fd` named by a UUID in its canonical form."""
    found: list[UUID] = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            try:
                parsed = UUID(entry.name)
            except ValueError:
                continue
            if str(parsed) == entry.name and entry.is_dir(follow_symlinks=False):
                found.append(parsed)
    return found


def _is_link_of(blob_dir_fd: int, blob: str, chat_fd: int, name: str) -> bool:
    try:
        shown = os.stat(blob, dir_fd=blob_dir_fd, follow_symlinks=False)
        present = os.stat(name, dir_fd=chat_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (present.st_dev, present.st_ino) == (shown.st_dev, shown.st_ino)


def _create_history(chat_fd: int) -> None:
    """An empty `history.md` unless something is at the name."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(HISTORY_FILE_NAME, CREATE_FLAGS, HISTORY_MODE, dir_fd=chat_fd))

"""Reading a data directory written by the release before ADR 027, to convert it.

That release kept each version only in the chat directory
(`workspaces/<workspace_id>/chats/<chat_id>/`): `history.md`, whose first
`history_bytes` bytes were committed (a longer tail was not), and the attachments under
their names. A change it had applied but not settled when it stopped left a backup of
the previous content in `.trash/<token>` described by `.trash/<token>.json`; `.staging`
held uploads in flight, `.locks` its processes' locks. Each committed version is found
here, checked against its row, and given to the blob area; then those areas go.
"""

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import anyio.to_thread

from adapter.file_system import (
    DEFAULT_CHUNK_BYTES,
    READ_FLAGS,
    blob_relative_path,
    digest_of,
    open_regular,
)
from domain.chat import HISTORY_FILE_NAME, Chat, ChatFile
from domain.error import StoredContentMissingError

LEGACY_AREAS: Final = ('.staging', '.trash', '.locks')


def blob_path(data_dir: Path, blob_id: UUID) -> Path:
    """Where the blob area keeps a blob: `.blobs/<2 hex>/<32 hex>`."""
    return data_dir / blob_relative_path(blob_id)


def _open_regular(path: Path) -> int | None:
    """A regular file opened for reading; None when there is none (or something else)."""
    try:
        return open_regular(path, READ_FLAGS)
    except OSError:
        return None


class LegacyLayout:
    """The previous release's layout under `data_dir` (`LegacyStore`)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.chats_root = data_dir / 'workspaces'
        self.trash = data_dir / '.trash'

    async def present(self) -> bool:
        return await anyio.to_thread.run_sync(
            lambda: any(os.path.lexists(self.data_dir / area) for area in LEGACY_AREAS)
        )

    async def in_use(self) -> bool:
        return await anyio.to_thread.run_sync(self._in_use)

    def _in_use(self) -> bool:
        """Whether a process of that release still holds its lock (it would go on writing)."""
        locks = self.data_dir / '.locks'
        for lock in locks.glob('owner-*') if locks.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                finally:
                    os.close(fd)
        return False

    def _chat_dir(self, workspace_id: UUID, chat_id: UUID) -> Path:
        return self.chats_root / str(workspace_id) / 'chats' / str(chat_id)

    def _pending(self) -> list[tuple[dict[str, Any], Path]]:
        """The unsettled changes in the trash: (record, backup), oldest first."""
        found: list[tuple[int, dict[str, Any], Path]] = []
        for sidecar in self.trash.glob('*.json') if self.trash.is_dir() else []:
            try:
                record = json.loads(sidecar.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict):
                found.append((int(record.get('created_ns', 0)), record, sidecar.with_suffix('')))
        return [(record, backup) for _, record, backup in sorted(found, key=lambda f: f[0])]

    def _candidates(self, chat: Chat | ChatFile, workspace_id: UUID, name: str) -> list[Path]:
        """Where the committed version of `name` may be, the most likely first."""
        chat_id = str(chat.chat_id)
        pending = self._pending()
        first: list[Path] = []
        if isinstance(chat, Chat):
            # a history put that did not commit replaced history.md; its backup is the
            # committed one (the put would have raised the revision past the record's)
            first = [
                backup
                for record, backup in pending
                if record.get('operation') == 'put_history'
                and record.get('chat_id') == chat_id
                and record.get('replaced')
                and int(record.get('history_revision', -1)) >= chat.history_revision
            ]
        later = [
            backup
            for record, backup in pending
            if record.get('operation') in {'put_attachment', 'delete_attachment'}
            and record.get('chat_id') == chat_id
            and record.get('name') == name
        ]
        for record, backup in pending:
            if record.get('operation') == 'delete_chat' and record.get('chat_id') == chat_id:
                later.append(backup / name)
            elif record.get('operation') == 'delete_workspace' and record.get(
                'workspace_id'
            ) == str(workspace_id):
                later.append(backup / 'chats' / chat_id / name)
        return [*first, self._chat_dir(workspace_id, chat.chat_id) / name, *later]

    def _open_history(self, chat: Chat) -> int:
        for path in self._candidates(chat, chat.workspace_id, HISTORY_FILE_NAME):
            fd = _open_regular(path)
            if fd is not None:
                if os.fstat(fd).st_size >= chat.history_bytes:
                    return fd
                os.close(fd)
        raise StoredContentMissingError

    async def history(self, chat: Chat) -> AsyncIterator[bytes]:
        """The committed `history_bytes` bytes of the chat's history."""
        fd = await anyio.to_thread.run_sync(self._open_history, chat)
        try:
            left = chat.history_bytes
            while left > 0:
                chunk = await anyio.to_thread.run_sync(os.read, fd, min(left, DEFAULT_CHUNK_BYTES))
                if not chunk:
                    raise StoredContentMissingError
                left -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def adopt_file(self, workspace_id: UUID, chat_file: ChatFile) -> bool:
        """Hard-link the file of the row's size and sha256 as its blob (`file_id`),
        read-only; False when there is none."""
        return await anyio.to_thread.run_sync(self._adopt_file, workspace_id, chat_file)

    def _adopt_file(self, workspace_id: UUID, chat_file: ChatFile) -> bool:
        target = blob_path(self.data_dir, chat_file.file_id)
        for path in self._candidates(chat_file, workspace_id, chat_file.name.value):
            fd = _open_regular(path)
            if fd is None:
                continue
            try:
                if (
                    os.fstat(fd).st_size != chat_file.size_bytes
                    or digest_of(fd)[1] != chat_file.sha256
                ):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):
                    os.link(path, target, follow_symlinks=False)
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
            _fsync_dir(target.parent)
            return True
        return False

    async def remove_areas(self) -> None:
        """Remove `.staging`, `.trash` and `.locks` (the locks last: they mark the layout)."""
        await anyio.to_thread.run_sync(self._remove_areas)

    def _remove_areas(self) -> None:
        for area in LEGACY_AREAS:
            path = self.data_dir / area
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        _fsync_dir(self.data_dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in {errno.EINVAL, errno.EROFS}:
            raise
    finally:
        os.close(fd)

"""Recovery and inspection of the data directory of `FileSystemChatStorage` (ADR 016).

Several processes (uvicorn workers, replicas) may share one data directory. Each serving
process holds `.locks/owner-<owner id>` locked (`flock`) for its whole life; its staging
tokens start with that id and its sidecars name it. A process is dead when its owner lock
can be taken. Recovery touches only what dead processes left; an entry that names no
owner is touched only when no other process is alive, or when it is older than the grace
period. Recoveries and `fsck --repair` serialise on `.locks/maintenance.lock`.
"""

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from adapter.file_storage import (
    _READ_FLAGS,
    _WRITE_FLAGS,
    CHATS_DIR_NAME,
    OWNER_ID_LENGTH,
    SIDECAR_SUFFIX,
    STAGING_DIR_NAME,
    TRASH_DIR_NAME,
    WORKSPACES_DIR_NAME,
    _fsync_dir,
    _open_regular,
    _remove,
    _UnexpectedFileError,
    is_attachment_version,
    new_owner_id,
    version_at,
)
from domain.chat import HISTORY_FILE_NAME, ChatAttachmentName
from domain.error import DomainError
from domain.recovery import (
    ChatDirectory,
    Leftover,
    PendingChange,
    PendingOperation,
    StoredEntry,
)

T = TypeVar('T')
P = ParamSpec('P')

LOCKS_DIR_NAME = '.locks'
MAINTENANCE_LOCK_NAME = 'maintenance.lock'
OWNER_LOCK_PREFIX = 'owner-'
# an entry that names no owner, or a sidecar of another host's process that cannot be
# tested, is left alone while younger than this and another process is alive
DEFAULT_GRACE_SECONDS = 3600.0
_HASH_CHUNK_BYTES = 1024 * 1024
_PUTS = frozenset({PendingOperation.PUT_ATTACHMENT, PendingOperation.PUT_HISTORY})
_HEX = frozenset('0123456789abcdef')


def _is_token(name: str) -> bool:
    return len(name) == 32 and set(name) <= _HEX  # noqa: PLR2004 - a uuid4 hex


def _staging_owner(name: str) -> str | None:
    """The owner id a staging entry's name starts with, if it has the form of a token."""
    token = name.removeprefix('probe-')
    return token[:OWNER_ID_LENGTH] if _is_token(token) else None


async def _in_thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.to_thread(func, *args, **kwargs)


class OwnerLock:
    """`.locks/owner-<id>`, held locked while this process may write staging or trash."""

    def __init__(self, data_dir: Path) -> None:
        self.owner = new_owner_id()
        locks = data_dir / LOCKS_DIR_NAME
        locks.mkdir(parents=True, exist_ok=True)
        self.path = locks / f'{OWNER_LOCK_PREFIX}{self.owner}'
        self._fd: int | None = os.open(
            self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # for a human who lists the directory; liveness comes from the lock alone
        about = {'pid': os.getpid(), 'host': socket.gethostname(), 'started_ns': time.time_ns()}
        os.write(self._fd, json.dumps(about).encode())

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            os.close(fd)


class FileSystemMaintenance:
    """`StorageMaintenance` on the layout of `FileSystemChatStorage`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        own_owner: str | None = None,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.data_dir = data_dir
        self.staging_dir = data_dir / STAGING_DIR_NAME
        self.trash_dir = data_dir / TRASH_DIR_NAME
        self.workspaces_dir = data_dir / WORKSPACES_DIR_NAME
        self.locks_dir = data_dir / LOCKS_DIR_NAME
        self._own_owner = own_owner
        self._grace_seconds = grace_seconds
        self._live: set[str] = set()

    # --- the maintenance lock and the owners ------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        fd = await _in_thread(self._lock_maintenance)
        try:
            self._live = await _in_thread(self._live_owners, forget_dead=True)
            yield not (self._live - {self._own_owner})
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _lock_maintenance(self) -> int:
        for directory in (self.locks_dir, self.staging_dir, self.trash_dir, self.workspaces_dir):
            directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            self.locks_dir / MAINTENANCE_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _live_owners(self, *, forget_dead: bool) -> set[str]:
        live: set[str] = set()
        if not self.locks_dir.is_dir():
            return live
        for path in self.locks_dir.glob(f'{OWNER_LOCK_PREFIX}*'):
            owner = path.name.removeprefix(OWNER_LOCK_PREFIX)
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # released meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # EWOULDBLOCK: held by a live process; a lock we cannot test counts as live
                live.add(owner)
            else:
                if forget_dead:
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return live

    def _unowned_may_go(self, path: Path, *, alone: bool) -> bool:
        """An entry that names no live owner's id: go only alone or after the grace period."""
        if alone:
            return True
        try:
            age = time.time() - path.lstat().st_mtime
        except FileNotFoundError:
            return False
        return age > self._grace_seconds

    def _owned_may_go(self, owner: str | None, path: Path, *, alone: bool) -> bool:
        if owner is None:
            return self._unowned_may_go(path, alone=alone)
        return owner not in self._live

    # --- staging and trash -------------------------------------------------------------

    async def sweep(self, *, alone: bool) -> int:
        return await _in_thread(self._sweep, alone=alone)

    def _sweep(self, *, alone: bool) -> int:
        removed = 0
        for path in sorted(self.staging_dir.iterdir()):
            if self._owned_may_go(_staging_owner(path.name), path, alone=alone):
                _remove(path)
                removed += 1
        for path in sorted(self.trash_dir.iterdir()):
            if path.name.endswith(SIDECAR_SUFFIX):
                token = path.name.removesuffix(SIDECAR_SUFFIX)
                if self._read_sidecar(path) is None and self._unowned_may_go(path, alone=alone):
                    # written when the crash came: nothing had moved yet
                    _remove(self.trash_dir / token)
                    path.unlink(missing_ok=True)
                    removed += 1
            elif not (
                self.trash_dir / f'{path.name}{SIDECAR_SUFFIX}'
            ).exists() and self._unowned_may_go(path, alone=alone):
                # a backup without its sidecar cannot be produced: the sidecar comes first
                # and goes last
                _remove(path)
                removed += 1
        if removed:
            _fsync_dir(self.staging_dir)
            _fsync_dir(self.trash_dir)
        return removed

    def _read_sidecar(self, path: Path) -> tuple[PendingChange, str | None] | None:
        """The change a sidecar describes and its owner; None when it is not readable."""
        try:
            record = json.loads(path.read_bytes())
            return _pending_change(path.name.removesuffix(SIDECAR_SUFFIX), record)
        except (OSError, ValueError, KeyError, TypeError, DomainError):
            return None

    async def pending_changes(self, *, alone: bool) -> list[PendingChange]:
        return await _in_thread(self._pending_changes, alone=alone)

    def _pending_changes(self, *, alone: bool) -> list[PendingChange]:
        changes = []
        for path in self.trash_dir.glob(f'*{SIDECAR_SUFFIX}'):
            read = self._read_sidecar(path)
            if read is not None and self._owned_may_go(read[1], path, alone=alone):
                changes.append(read[0])
        return sorted(changes, key=lambda change: change.created_ns, reverse=True)

    async def pending_changes_of(self, chat_id: UUID) -> list[PendingChange]:
        return await _in_thread(self._pending_changes_of, chat_id)

    def _pending_changes_of(self, chat_id: UUID) -> list[PendingChange]:
        changes = []
        for path in self.trash_dir.glob(f'*{SIDECAR_SUFFIX}'):
            read = self._read_sidecar(path)
            if read is not None and read[0].chat_id == chat_id:
                changes.append(read[0])
        return sorted(changes, key=lambda change: change.created_ns, reverse=True)

    async def settle(
        self, change: PendingChange, *, committed: bool, recorded_sha256: str | None = None
    ) -> None:
        await _in_thread(self._settle, change, committed=committed, recorded=recorded_sha256)

    def _settle(self, change: PendingChange, *, committed: bool, recorded: str | None) -> None:
        backup = self.trash_dir / change.token
        path = self._path_of(change)
        if committed:
            _remove(backup)
        elif change.operation in _PUTS:
            self._undo_put(change, backup, path, recorded)
        else:
            self._undo_delete(backup, path)
        if path.parent.is_dir():
            _fsync_dir(path.parent)
        _fsync_dir(self.trash_dir)
        (self.trash_dir / f'{change.token}{SIDECAR_SUFFIX}').unlink(missing_ok=True)
        _fsync_dir(self.trash_dir)

    def _undo_put(
        self, change: PendingChange, backup: Path, path: Path, recorded: str | None
    ) -> None:
        # put back only over the very bytes this change put there: anything else at the
        # path came later, from a write that committed. Not so for the history: a later
        # history write that committed would have made this one count as committed (the
        # revision), so the path holds this put's bytes, or them with appends of its
        # group on top that did not commit either (ADR 024)
        history = change.operation is PendingOperation.PUT_HISTORY
        ours = history or _sha256_of(path) == change.sha256
        if os.path.lexists(backup):
            if (ours or not os.path.lexists(path)) and (
                history or _still_recorded(backup, recorded)
            ):
                if backup.is_dir() and not backup.is_symlink():
                    # a directory a sandbox had planted at the name, moved away whole
                    path.unlink(missing_ok=True)
                backup.replace(path)
            elif ours and not history:
                path.unlink(missing_ok=True)
            # a rename onto a link of the same inode does nothing; then the link goes
            _remove(backup)
        elif ours and not change.replaced:
            path.unlink(missing_ok=True)

    def _undo_delete(self, backup: Path, path: Path) -> None:
        if not os.path.lexists(backup):
            return
        if not os.path.lexists(path) and path.parent.is_dir():
            backup.replace(path)
        else:
            _remove(backup)

    def _path_of(self, change: PendingChange) -> Path:
        workspace_dir = self.workspaces_dir / str(change.workspace_id)
        if change.operation is PendingOperation.DELETE_WORKSPACE or change.chat_id is None:
            return workspace_dir
        chat_dir = workspace_dir / CHATS_DIR_NAME / str(change.chat_id)
        if change.operation is PendingOperation.DELETE_CHAT:
            return chat_dir
        if change.operation is PendingOperation.PUT_HISTORY:
            return chat_dir / HISTORY_FILE_NAME
        return chat_dir / ChatAttachmentName(str(change.name)).value

    async def leftovers(self) -> list[Leftover]:
        return await _in_thread(self._leftovers)

    def _leftovers(self) -> list[Leftover]:
        live = self._live_owners(forget_dead=False)
        found = [
            Leftover(STAGING_DIR_NAME, path.name, _staging_owner(path.name) in live)
            for path in sorted(self.staging_dir.glob('*'))
        ]
        for path in sorted(self.trash_dir.glob('*')):
            sidecar = path if path.name.endswith(SIDECAR_SUFFIX) else None
            if sidecar is None:
                sidecar = self.trash_dir / f'{path.name}{SIDECAR_SUFFIX}'
            read = self._read_sidecar(sidecar)
            found.append(Leftover(TRASH_DIR_NAME, path.name, read is not None and read[1] in live))
        return found

    # --- chat directories --------------------------------------------------------------

    def _chat_dir(self, directory: ChatDirectory) -> Path:
        return (
            self.workspaces_dir
            / str(directory.workspace_id)
            / CHATS_DIR_NAME
            / str(directory.chat_id)
        )

    async def chat_directories(self) -> list[ChatDirectory]:
        return await _in_thread(self._chat_directories)

    def _chat_directories(self) -> list[ChatDirectory]:
        found = []
        for chats_dir in sorted(self.workspaces_dir.glob(f'*/{CHATS_DIR_NAME}')):
            workspace_id = _uuid(chats_dir.parent.name)
            if workspace_id is None:
                continue
            # the entries' types come with the listing (d_type): no stat of each directory
            with os.scandir(chats_dir) as entries:
                names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
            for name in names:
                chat_id = _uuid(name)
                if chat_id is not None:
                    found.append(ChatDirectory(workspace_id, chat_id))
        return found

    async def chat_entries(self, directory: ChatDirectory) -> list[StoredEntry] | None:
        return await _in_thread(self._chat_entries, self._chat_dir(directory))

    def _chat_entries(self, path: Path) -> list[StoredEntry] | None:
        try:
            with os.scandir(path) as entries:
                return sorted(
                    (
                        StoredEntry(
                            name=entry.name,
                            is_regular_file=entry.is_file(follow_symlinks=False),
                            size_bytes=entry.stat(follow_symlinks=False).st_size,
                        )
                        for entry in entries
                    ),
                    key=lambda entry: entry.name,
                )
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def file_sha256(self, directory: ChatDirectory, name: str) -> str | None:
        if '/' in name or name in {'', '.', '..'}:
            raise ValueError('not a file name')
        return await _in_thread(_sha256_of, self._chat_dir(directory) / name)

    async def cut_histories(self, committed: Mapping[ChatDirectory, int]) -> int:
        # one thread call for the lot: a start-up visits every chat directory
        return await _in_thread(self._cut_histories, dict(committed))

    def _cut_histories(self, committed: Mapping[ChatDirectory, int]) -> int:
        return sum(
            self._cut_history(self._chat_dir(directory), history_bytes)
            for directory, history_bytes in committed.items()
        )

    def _cut_history(self, chat_dir: Path, history_bytes: int) -> bool:
        path = chat_dir / HISTORY_FILE_NAME
        try:
            if os.lstat(path).st_size <= history_bytes:
                return False  # nothing to cut (most histories): no open for writing
            fd = _open_regular(path, _WRITE_FLAGS)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_size <= history_bytes:
                return False
            os.ftruncate(fd, history_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    async def remove_if_empty(self, directory: ChatDirectory) -> bool:
        return await _in_thread(self._remove_if_empty, self._chat_dir(directory))

    def _remove_if_empty(self, chat_dir: Path) -> bool:
        entries = self._chat_entries(chat_dir)
        if entries is None:
            return False
        if entries and entries != [StoredEntry(HISTORY_FILE_NAME, True, 0)]:  # noqa: FBT003
            return False
        (chat_dir / HISTORY_FILE_NAME).unlink(missing_ok=True)
        try:
            chat_dir.rmdir()
        except OSError:
            return False  # something arrived meanwhile
        _fsync_dir(chat_dir.parent)
        return True


def _still_recorded(backup: Path, recorded: str | None) -> bool:
    """Whether the replaced file may go back: not when it is a file the service wrote
    (its version mark names its sha256) that the rows no longer name, since a delete or a
    put of the name committed after this change, and it would come back without a record.
    An unmarked file (a sandbox's, or written before marks) goes back, as before.
    """
    return is_attachment_version(recorded)(version_at(backup))


def _sha256_of(path: Path) -> str | None:
    """sha256 of the regular file at `path`; None when there is none."""
    try:
        fd = _open_regular(path, _READ_FLAGS)
    except (OSError, _UnexpectedFileError):
        return None
    digest = hashlib.sha256()
    try:
        while data := os.read(fd, _HASH_CHUNK_BYTES):
            digest.update(data)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _uuid(value: str) -> UUID | None:
    try:
        parsed = UUID(value)
    except ValueError:
        return None
    # only the canonical spelling is a directory of ours
    return parsed if str(parsed) == value else None


def _pending_change(token: str, record: dict[str, Any]) -> tuple[PendingChange, str | None]:
    if not _is_token(token):
        raise ValueError('not a token')
    operation = PendingOperation(record['operation'])
    chat_id = record.get('chat_id')
    if chat_id is None and operation is not PendingOperation.DELETE_WORKSPACE:
        raise ValueError('a chat change without its chat')
    name = record.get('name')
    if operation in {PendingOperation.PUT_ATTACHMENT, PendingOperation.DELETE_ATTACHMENT}:
        ChatAttachmentName(str(name))  # a name we never wrote cannot address a path
    revision = record.get('history_revision')
    change = PendingChange(
        token=token,
        operation=operation,
        workspace_id=UUID(str(record['workspace_id'])),
        chat_id=None if chat_id is None else UUID(str(chat_id)),
        created_ns=int(record['created_ns']),
        name=None if name is None else str(name),
        sha256=None if record.get('sha256') is None else str(record['sha256']),
        history_revision=None if revision is None else int(revision),
        replaced=bool(record.get('replaced', False)),
    )
    owner = record.get('owner')
    return change, None if owner is None else str(owner)

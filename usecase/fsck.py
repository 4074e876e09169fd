"""`chat-storage fsck`: check the data directory against the metadata, offline (ADR 016)."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from uuid import UUID

from domain.recovery import ChatDirectory, StoredEntry

from domain.chat import HISTORY_FILE_NAME, Chat, ChatFile
from domain.workspace import Workspace
from usecase.interface import StorageMaintenance, UnitOfWorkFactory
from usecase.recover_storage import RecoverStorage, all_workspaces, lock_workspace

Progress = Callable[[int, int], None]
"""`progress(done, total)`, called as chats and files are checked."""


class FindingKind(Enum):
    """What `fsck` can find; `damage` says whether it makes the exit status non-zero."""

    FILE_MISSING = ('file_missing', True)
    SIZE_MISMATCH = ('size_mismatch', True)
    SHA256_MISMATCH = ('sha256_mismatch', True)
    HISTORY_MISSING = ('history_missing', True)
    HISTORY_SHORT = ('history_short', True)
    HISTORY_TAIL = ('history_tail', True)
    CHAT_DIRECTORY_MISSING = ('chat_directory_missing', True)
    ORPHAN_CHAT_DIRECTORY = ('orphan_chat_directory', True)
    FILE_COUNT_MISMATCH = ('file_count_mismatch', True)
    USAGE_MISMATCH = ('usage_mismatch', True)
    STAGING_LEFTOVER = ('staging_leftover', True)
    TRASH_LEFTOVER = ('trash_leftover', True)
    # a sandbox may write into the chat directory it mounts: reported, never touched
    UNKNOWN_FILE = ('unknown_file', False)

    def __init__(self, code: str, damage: bool) -> None:
        self.code = code
        self.damage = damage


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    detail: str
    workspace_id: UUID | None = None
    chat_id: UUID | None = None
    name: str | None = None
    repaired: bool = False

    @property
    def key(self) -> tuple[FindingKind, UUID | None, UUID | None, str | None]:
        return (self.kind, self.workspace_id, self.chat_id, self.name)


@dataclass(frozen=True, slots=True)
class WorkspaceTotals:
    workspace_id: UUID
    used_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class FsckReport:
    findings: list[Finding]
    totals: list[WorkspaceTotals]
    chats: int = 0
    files: int = 0
    bytes_hashed: int = 0
    repaired: bool = False

    @property
    def damage_left(self) -> bool:
        return any(f.kind.damage and not f.repaired for f in self.findings)


@dataclass(slots=True)
class _Scan:
    findings: list[Finding] = field(default_factory=list)
    totals: list[WorkspaceTotals] = field(default_factory=list)
    chats: int = 0
    files: int = 0
    bytes_hashed: int = 0


@dataclass(frozen=True, slots=True)
class _ChatRows:
    workspace: Workspace
    chat: Chat
    files: list[ChatFile]


class CheckStorage:
    """Compare every row with the disk: hashes, sizes, orphans both ways, usage totals.

    `repair` fixes only what needs no guess: it runs start-up recovery (leftovers of dead
    processes, pending changes, history tails, empty orphan directories, `used_bytes`),
    drops file rows whose file is gone and recounts `file_count`. A hash mismatch, a
    short or missing history and files nobody recorded are reported, never changed.
    """

    def __init__(
        self, uow: UnitOfWorkFactory, maintenance: StorageMaintenance, recover: RecoverStorage
    ) -> None:
        self._uow = uow
        self._maintenance = maintenance
        self._recover = recover

    async def __call__(
        self, *, repair: bool = False, progress: Progress | None = None
    ) -> FsckReport:
        scan = await self._scan(hash_files=True, progress=progress)
        if not repair:
            return FsckReport(scan.findings, scan.totals, scan.chats, scan.files, scan.bytes_hashed)
        await self._recover()
        await self._repair_rows(scan.findings)
        after = await self._scan(hash_files=False, progress=None)
        # a hash mismatch is never repaired; the scan after the repair does not hash
        left = {f.key for f in after.findings} | {
            f.key for f in scan.findings if f.kind is FindingKind.SHA256_MISMATCH
        }
        found = [replace(f, repaired=f.key not in left) for f in scan.findings]
        known = {f.key for f in scan.findings}
        found += [f for f in after.findings if f.key not in known]
        return FsckReport(
            found, after.totals, scan.chats, scan.files, scan.bytes_hashed, repaired=True
        )

    # --- checking ----------------------------------------------------------------------

    async def _scan(self, *, hash_files: bool, progress: Progress | None) -> _Scan:
        scan = _Scan()
        for leftover in await self._maintenance.leftovers():
            if not leftover.in_use:
                kind = (
                    FindingKind.TRASH_LEFTOVER
                    if leftover.area == '.trash'
                    else FindingKind.STAGING_LEFTOVER
                )
                scan.findings.append(
                    Finding(kind, f'{leftover.area}/{leftover.name}', name=leftover.name)
                )
        rows = await self._rows(scan)
        total = len(rows) + sum(len(r.files) for r in rows)
        done = 0
        for chat_rows in rows:
            done += 1 + len(chat_rows.files)
            await self._check_chat(scan, chat_rows, hash_files=hash_files)
            if progress is not None:
                progress(done, total)
        known = {(r.workspace.workspace_id, r.chat.chat_id) for r in rows}
        for directory in await self._maintenance.chat_directories():
            if (directory.workspace_id, directory.chat_id) not in known:
                scan.findings.append(
                    Finding(
                        FindingKind.ORPHAN_CHAT_DIRECTORY,
                        'a chat directory without a chat',
                        directory.workspace_id,
                        directory.chat_id,
                    )
                )
        return scan

    async def _rows(self, scan: _Scan) -> list[_ChatRows]:
        rows: list[_ChatRows] = []
        async with self._uow(write=False) as uow:
            for workspace in await all_workspaces(uow):
                stored = 0
                for chat in await uow.chats.list_by_workspace_id(workspace.workspace_id):
                    files = await uow.chat_files.list_by_chat_id(chat.chat_id)
                    rows.append(_ChatRows(workspace, chat, files))
                    stored += chat.history_bytes + sum(f.size_bytes for f in files)
                scan.totals.append(
                    WorkspaceTotals(workspace.workspace_id, workspace.used_bytes, stored)
                )
                if stored != workspace.used_bytes:
                    scan.findings.append(
                        Finding(
                            FindingKind.USAGE_MISMATCH,
                            f'used_bytes {workspace.used_bytes}, stored {stored}',
                            workspace.workspace_id,
                        )
                    )
        return rows

    async def _check_chat(self, scan: _Scan, rows: _ChatRows, *, hash_files: bool) -> None:
        chat = rows.chat
        ids = (chat.workspace_id, chat.chat_id)
        scan.chats += 1
        scan.files += len(rows.files)
        if chat.file_count != len(rows.files):
            detail = f'file_count {chat.file_count}, rows {len(rows.files)}'
            scan.findings.append(Finding(FindingKind.FILE_COUNT_MISMATCH, detail, *ids))
        directory = ChatDirectory(*ids)
        entries = await self._maintenance.chat_entries(directory)
        if entries is None:
            scan.findings.append(
                Finding(FindingKind.CHAT_DIRECTORY_MISSING, 'no chat directory', *ids)
            )
            for chat_file in rows.files:
                scan.findings.append(
                    Finding(FindingKind.FILE_MISSING, 'gone', *ids, chat_file.name.value)
                )
            return
        on_disk = {entry.name: entry for entry in entries}
        self._check_history(scan, chat, on_disk.pop(HISTORY_FILE_NAME, None))
        for chat_file in rows.files:
            await self._check_file(
                scan, directory, chat_file, on_disk.pop(chat_file.name.value, None), hash_files
            )
        for name in sorted(on_disk):
            scan.findings.append(Finding(FindingKind.UNKNOWN_FILE, 'no row', *ids, name))

    def _check_history(self, scan: _Scan, chat: Chat, entry: StoredEntry | None) -> None:
        ids = (chat.workspace_id, chat.chat_id, HISTORY_FILE_NAME)
        if entry is None or not entry.is_regular_file:
            scan.findings.append(Finding(FindingKind.HISTORY_MISSING, 'gone', *ids))
        elif entry.size_bytes < chat.history_bytes:
            detail = f'{entry.size_bytes} bytes, history_bytes {chat.history_bytes}'
            scan.findings.append(Finding(FindingKind.HISTORY_SHORT, detail, *ids))
        elif entry.size_bytes > chat.history_bytes:
            detail = f'{entry.size_bytes - chat.history_bytes} uncommitted bytes'
            scan.findings.append(Finding(FindingKind.HISTORY_TAIL, detail, *ids))

    async def _check_file(
        self,
        scan: _Scan,
        directory: ChatDirectory,
        chat_file: ChatFile,
        entry: StoredEntry | None,
        hash_files: bool,
    ) -> None:
        ids = (directory.workspace_id, directory.chat_id, chat_file.name.value)
        if entry is None or not entry.is_regular_file:
            scan.findings.append(Finding(FindingKind.FILE_MISSING, 'gone', *ids))
            return
        if entry.size_bytes != chat_file.size_bytes:
            detail = f'{entry.size_bytes} bytes, recorded {chat_file.size_bytes}'
            scan.findings.append(Finding(FindingKind.SIZE_MISMATCH, detail, *ids))
        if hash_files:
            digest = await self._maintenance.file_sha256(directory, chat_file.name.value)
            scan.bytes_hashed += entry.size_bytes
            if digest is None:
                scan.findings.append(Finding(FindingKind.FILE_MISSING, 'gone', *ids))
            elif digest != chat_file.sha256:
                detail = f'sha256 {digest}, recorded {chat_file.sha256}'
                scan.findings.append(Finding(FindingKind.SHA256_MISMATCH, detail, *ids))

    # --- repairing ---------------------------------------------------------------------

    async def _repair_rows(self, findings: list[Finding]) -> None:
        """Drop rows of files that are gone; recount `file_count` of every chat found off."""
        chats = {
            (f.workspace_id, f.chat_id)
            for f in findings
            if f.kind in {FindingKind.FILE_MISSING, FindingKind.FILE_COUNT_MISMATCH}
        }
        for workspace_id, chat_id in sorted(chats, key=str):
            if workspace_id is not None and chat_id is not None:
                await self._repair_chat(ChatDirectory(workspace_id, chat_id))

    async def _repair_chat(self, directory: ChatDirectory) -> None:
        async with self._uow() as uow:
            # the workspace lock serialises this with any writer of the workspace
            workspace = await lock_workspace(uow, directory.workspace_id)
            if workspace is None:
                return
            chat = await uow.chats.get(directory.chat_id)
            if chat is None:
                return
            entries = await self._maintenance.chat_entries(directory) or []
            present = {e.name for e in entries if e.is_regular_file}
            kept = 0
            for chat_file in await uow.chat_files.list_by_chat_id(chat.chat_id):
                if chat_file.name.value in present:
                    kept += 1
                else:
                    await uow.chat_files.delete(chat_file.file_id)
                    await uow.workspaces.add_used_bytes(
                        workspace.workspace_id, -chat_file.size_bytes
                    )
            await uow.chats.save(replace(chat, file_count=kept))
            await uow.commit()

"""Start-up recovery: settle what a crash left half done, with the metadata as the truth."""

import logging
from dataclasses import dataclass, replace
from uuid import UUID

from domain.chat import ChatAttachmentName
from domain.page import PageKey
from domain.recovery import ChatDirectory, PendingChange, PendingOperation
from domain.workspace import Workspace
from usecase.interface import ChatStorage, StorageMaintenance, UnitOfWork, UnitOfWorkFactory

_log = logging.getLogger(__name__)

WORKSPACE_PAGE = 500
# chat directories looked up in one read at start-up
CHAT_BATCH = 500


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    swept: int = 0
    committed: int = 0
    rolled_back: int = 0
    tails_cut: int = 0
    directories_removed: int = 0
    usage_fixed: int = 0

    @property
    def changed_anything(self) -> bool:
        return any(
            (
                self.swept,
                self.committed,
                self.rolled_back,
                self.tails_cut,
                self.directories_removed,
                self.usage_fixed,
            )
        )


async def is_committed(uow: UnitOfWork, change: PendingChange) -> bool:
    """Whether the metadata holds the change (ADR 011's rules, ADR 016)."""
    if change.operation is PendingOperation.DELETE_WORKSPACE:
        return await uow.workspaces.get(change.workspace_id) is None
    chat = None if change.chat_id is None else await uow.chats.get(change.chat_id)
    if chat is None:
        # the chat is gone (its delete committed): nothing of this change is kept
        return True
    if change.operation is PendingOperation.PUT_HISTORY:
        return chat.history_revision > (change.history_revision or 0)
    if change.operation is PendingOperation.DELETE_CHAT:
        return False
    name = ChatAttachmentName(str(change.name))
    chat_file = await uow.chat_files.get_by_chat_id_and_name(chat.chat_id, name)
    if change.operation is PendingOperation.DELETE_ATTACHMENT:
        return chat_file is None
    return chat_file is not None and chat_file.sha256 == change.sha256


async def settle_by_rows(
    uow: UnitOfWork, maintenance: StorageMaintenance, change: PendingChange
) -> bool:
    """Settle one pending change by what the rows hold (the caller holds the workspace
    lock); whether it had committed."""
    committed = await is_committed(uow, change)
    recorded = None
    if not committed and change.operation is PendingOperation.PUT_ATTACHMENT:
        recorded = await _recorded_sha256(uow, change)
    await maintenance.settle(change, committed=committed, recorded_sha256=recorded)
    return committed


async def _recorded_sha256(uow: UnitOfWork, change: PendingChange) -> str | None:
    if change.chat_id is None:
        return None
    name = ChatAttachmentName(str(change.name))
    chat_file = await uow.chat_files.get_by_chat_id_and_name(change.chat_id, name)
    return None if chat_file is None else chat_file.sha256


async def settle_chat_changes(
    uow: UnitOfWork, maintenance: StorageMaintenance, chat_id: UUID
) -> int:
    """Undo the chat's pending changes of any process that did not commit, by the rows;
    the caller holds the workspace lock, so none of them is in flight (ADR 025). One that
    committed is in nobody's way: its owner drops its backup (or start-up recovery does),
    and dropping it here too would race the owner. How many were undone."""
    undone = 0
    for change in await maintenance.pending_changes_of(chat_id):
        if not await is_committed(uow, change):
            await settle_by_rows(uow, maintenance, change)
            undone += 1
    return undone


class SettleChatChanges:
    """Repair a read whose file is not its record's version for longer than a write
    takes, or is missing under its record, under the chat's workspace lock.

    Taking the lock waits for a write in flight. The chat's pending changes that did not
    commit (a crash, or a commit of unknown outcome, on any process) are undone by the
    rows (ADR 025). A version mark that is still not the rows' then was moved, copied or
    set by a sandbox: it is dropped, and the file read as a sandbox's. For a missing file
    with nothing pending, there is nothing to repair and no lock is taken.
    """

    def __init__(
        self, uow: UnitOfWorkFactory, maintenance: StorageMaintenance, storage: ChatStorage
    ) -> None:
        self._uow = uow
        self._maintenance = maintenance
        self._storage = storage

    async def __call__(
        self, workspace_id: UUID, chat_id: UUID, file_id: UUID | None = None, *, missing: bool
    ) -> None:
        pending = await self._maintenance.pending_changes_of(chat_id)  # a look, no lock
        if missing and not pending:
            return
        async with self._uow() as uow:
            if await lock_workspace(uow, workspace_id) is None:
                return
            if pending:
                await settle_chat_changes(uow, self._maintenance, chat_id)
            chat = await uow.chats.get(chat_id)
            record = None if file_id is None else await uow.chat_files.get(file_id)
            if chat is None or (
                file_id is not None and (record is None or record.chat_id != chat_id)
            ):
                return
            await self._storage.drop_stale_mark(chat, record)


async def lock_workspace(uow: UnitOfWork, workspace_id: UUID) -> Workspace | None:
    """Take the workspace row's lock (every write to the workspace takes it first), and
    return the row; None when there is no such workspace."""
    workspace = await uow.workspaces.get(workspace_id)
    if workspace is None:
        return None
    return await uow.workspaces.get_by_user_id(workspace.user_id, for_update=True)


async def all_workspaces(uow: UnitOfWork) -> list[Workspace]:
    """Every workspace, read page by page."""
    found: list[Workspace] = []
    while True:
        after = PageKey(found[-1].created_at, found[-1].workspace_id) if found else None
        page = await uow.workspaces.list_all(limit=WORKSPACE_PAGE, after=after)
        found.extend(page)
        if len(page) < WORKSPACE_PAGE:
            return found


async def fix_usage(uow_factory: UnitOfWorkFactory, workspace: Workspace) -> bool:
    """Set `used_bytes` to what the rows account for, under the workspace lock."""
    async with uow_factory() as uow:
        locked = await uow.workspaces.get_by_user_id(workspace.user_id, for_update=True)
        if locked is None or locked.workspace_id != workspace.workspace_id:
            return False
        total = await uow.workspaces.stored_bytes(workspace.workspace_id)
        if total == locked.used_bytes:
            return False
        _log.warning(
            'workspace %s: used_bytes %d, stored %d; corrected',
            workspace.workspace_id,
            locked.used_bytes,
            total,
        )
        await uow.workspaces.save(replace(locked, used_bytes=total))
        await uow.commit()
    return True


class RecoverStorage:
    """Run once before serving; safe when several processes start on one data directory.

    Under the data directory's maintenance lock: drop staging and trash leftovers of dead
    processes, settle their pending changes by what the metadata says, and, when no other
    process is alive, cut uncommitted history tails and remove chat directories whose
    chat insert never committed. Then every workspace's `used_bytes` is checked against
    its rows. See ADR 016.
    """

    def __init__(self, uow: UnitOfWorkFactory, maintenance: StorageMaintenance) -> None:
        self._uow = uow
        self._maintenance = maintenance

    async def __call__(self) -> RecoveryReport:
        async with self._maintenance.exclusive() as alone:
            swept = await self._maintenance.sweep(alone=alone)
            committed = rolled_back = 0
            for change in await self._maintenance.pending_changes(alone=alone):
                # checked and settled under the workspace's lock: other processes may be
                # serving (not `alone`), and a write of theirs committed in between would
                # make the check stale; an undone history put would then overwrite it
                async with self._uow() as uow:
                    await lock_workspace(uow, change.workspace_id)
                    done = await settle_by_rows(uow, self._maintenance, change)
                committed += done
                rolled_back += not done
            tails_cut = removed = 0
            if alone:
                tails_cut, removed = await self._tidy_chat_directories()
            usage_fixed = await self._fix_usage()
        report = RecoveryReport(swept, committed, rolled_back, tails_cut, removed, usage_fixed)
        if report.changed_anything:
            _log.warning('start-up recovery: %s', report)
        return report

    async def _tidy_chat_directories(self) -> tuple[int, int]:
        tails_cut = removed = 0
        directories = await self._maintenance.chat_directories()
        for start in range(0, len(directories), CHAT_BATCH):
            batch = directories[start : start + CHAT_BATCH]
            async with self._uow(write=False) as uow:
                chats = {
                    chat.chat_id: chat
                    for chat in await uow.chats.get_many([directory.chat_id for directory in batch])
                }
            committed: dict[ChatDirectory, int] = {}
            for directory in batch:
                chat = chats.get(directory.chat_id)
                if chat is None or chat.workspace_id != directory.workspace_id:
                    removed += await self._remove_orphan(directory)
                else:
                    committed[directory] = chat.history_bytes
            tails_cut += await self._maintenance.cut_histories(committed)
        return tails_cut, removed

    async def _remove_orphan(self, directory: ChatDirectory) -> bool:
        # a chat whose insert never committed left an empty directory; anything with
        # content is left for `fsck` to report: a sandbox may have written it
        if await self._maintenance.remove_if_empty(directory):
            return True
        _log.warning('chat directory %s has no chat and is not empty', directory)
        return False

    async def _fix_usage(self) -> int:
        async with self._uow(write=False) as uow:
            mismatched = await uow.workspaces.list_usage_mismatches()
        fixed = 0
        for workspace in mismatched:
            fixed += await fix_usage(self._uow, workspace)
        return fixed

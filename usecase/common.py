"""Steps shared by several use cases: ownership checks and settling file system changes."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar
from uuid import UUID

from domain.chat import Chat
from domain.content import StagedContent
from domain.error import (
    ChatNotFoundError,
    CommitOutcomeUnknownError,
    ContentLimitExceededError,
    DomainError,
    FileTooLargeError,
    StoredContentMissingError,
    StoredVersionChangingError,
    WorkspaceNotFoundError,
    WorkspaceQuotaExceededError,
)
from domain.workspace import Workspace
from usecase.interface import ByteStream, ChatStorage, StorageChange, UnitOfWork

T = TypeVar('T')

# the pauses of a read whose file is a version another write has put at the name: that
# write holds the workspace lock until it commits or rolls back (milliseconds); about 1.6 s
# in all before the read answers `service_unavailable`
VERSION_WAITS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
# after the pause of this index (about 87 ms of pauses in all) a write in flight is
# normally over: what is still in the way is looked into under the lock (`repair`), once
REPAIR_AFTER = 4


async def once_settled(
    attempt: Callable[[], Awaitable[T]],
    between: Callable[[], Awaitable[None]] | None = None,
    repair: Callable[[bool], Awaitable[None]] | None = None,
) -> T:
    """`attempt()` (which opens a stored file) until the file is the record's version.

    A write swaps its file in before its metadata commits (ADR 011), so a reader may open a
    version its record does not describe; it pauses, runs `between` (a fresh look at the
    record, which raises once the record is gone), and tries again. A file that stays
    another version, or is missing under its record, gets one `repair` (under the
    workspace lock: settling what a crashed or cut-off write left, ADR 025; its argument
    says whether the file was missing).
    """
    missing = repaired = False
    for index, wait in enumerate(VERSION_WAITS):
        try:
            return await attempt()
        except StoredVersionChangingError:
            await asyncio.sleep(wait)
            due = index >= REPAIR_AFTER
        except StoredContentMissingError:
            # a delete may have taken the file since the record was read: a fresh look at
            # the record tells (`between` raises once it is gone); missing again after that
            # (and after the repair) is missing
            if missing:
                if between is not None:
                    await between()  # the repair waited for a delete in flight: gone now?
                raise
            missing = due = True
        if between is not None:
            await between()
        if due and repair is not None and not repaired:
            repaired = True
            await repair(missing)
    return await attempt()


async def primed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Start the stream now, so that a file that cannot be read is an error response.

    Storage opens a file on the first chunk; once a response's headers are sent, an error
    could only cut the body short.
    """
    first = await anext(chunks, None)

    async def chained() -> AsyncIterator[bytes]:
        if first is not None:
            yield first
        async for chunk in chunks:
            yield chunk

    return chained()


async def owned_workspace(
    uow: UnitOfWork,
    user_id: UUID,
    *,
    for_update: bool = False,
) -> Workspace:
    """The caller's workspace; `for_update` serialises writers of the workspace."""
    workspace = await uow.workspaces.get_by_user_id(user_id, for_update=for_update)
    if workspace is None:
        raise WorkspaceNotFoundError(user_id)
    return workspace


async def owned_chat(
    uow: UnitOfWork,
    user_id: UUID,
    chat_id: UUID,
    *,
    for_update: bool = False,
) -> tuple[Workspace, Chat]:
    """The caller's workspace and chat; another user's chat is reported as missing."""
    if for_update:
        # the lock first, then the chat as it is once the lock is held
        workspace = await owned_workspace(uow, user_id, for_update=True)
        chat = await uow.chats.get(chat_id)
    else:
        # one statement for both (ADR 019)
        found, chat = await uow.chats.get_with_workspace(user_id, chat_id)
        if found is None:
            raise WorkspaceNotFoundError(user_id)
        workspace = found
    if chat is None or chat.workspace_id != workspace.workspace_id:
        raise ChatNotFoundError(chat_id)
    return workspace, chat


async def commit_with(uow: UnitOfWork, change: StorageChange) -> None:
    """Make `change` durable and commit the metadata; if that fails, put the disk back
    before re-raising.

    When the commit's outcome is unknown, the rows may have committed: the change is
    left applied and unsettled, as a crash at that moment would leave it, for start-up
    recovery to settle against the rows (ADR 016). Putting it back could lose committed
    bytes; leaving it loses none.
    """
    try:
        await uow.commit(change)
    except CommitOutcomeUnknownError:
        raise
    except BaseException:
        await change.rollback()
        raise


def _refusal(size: int, *, workspace: Workspace | None, max_file_bytes: int) -> DomainError:
    if size > max_file_bytes or workspace is None:
        return FileTooLargeError(max_file_bytes)
    return WorkspaceQuotaExceededError(workspace.workspace_id, workspace.quota_bytes)


async def stage_within_limits(
    storage: ChatStorage,
    content: ByteStream,
    *,
    workspace: Workspace | None,
    max_file_bytes: int,
    declared_size: int | None,
    credit_bytes: int = 0,
    durable: bool = True,
) -> StagedContent:
    """Stage a request body, refusing it as soon as it passes the size limit or the quota.

    `credit_bytes` are bytes the write will free (the file it replaces). The quota is
    checked again, authoritatively, when the metadata commits; with no `workspace` (not
    looked up yet), only then.
    """
    limit = max_file_bytes
    if workspace is not None:
        limit = min(limit, max(0, workspace.quota_bytes - workspace.used_bytes + credit_bytes))
    if declared_size is not None and declared_size > limit:
        raise _refusal(declared_size, workspace=workspace, max_file_bytes=max_file_bytes)
    try:
        return await storage.stage(content, limit_bytes=limit, durable=durable)
    except ContentLimitExceededError:
        raise _refusal(limit + 1, workspace=workspace, max_file_bytes=max_file_bytes) from None


async def charge_usage(uow: UnitOfWork, workspace: Workspace, delta: int) -> None:
    """Account `delta` bytes to the workspace in this unit of work, within its quota."""
    if not await uow.workspaces.add_used_bytes(workspace.workspace_id, delta):
        raise WorkspaceQuotaExceededError(workspace.workspace_id, workspace.quota_bytes)

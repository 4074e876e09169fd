"""Steps shared by several use cases: ownership checks, staging within limits, usage."""

from collections.abc import AsyncIterator
from uuid import UUID

from domain.chat import Chat
from domain.content import StagedContent
from domain.error import (
    ChatNotFoundError,
    ContentLimitExceededError,
    DomainError,
    FileTooLargeError,
    WorkspaceNotFoundError,
    WorkspaceQuotaExceededError,
)
from domain.workspace import Workspace
from usecase.interface import ByteStream, UnitOfWork
from usecase.store_ports import BlobStore


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


def _refusal(size: int, *, workspace: Workspace | None, max_file_bytes: int) -> DomainError:
    if size > max_file_bytes or workspace is None:
        return FileTooLargeError(max_file_bytes)
    return WorkspaceQuotaExceededError(workspace.workspace_id, workspace.quota_bytes)


async def stage_within_limits(
    blobs: BlobStore,
    content: ByteStream,
    *,
    workspace: Workspace | None,
    max_file_bytes: int,
    declared_size: int | None,
    credit_bytes: int = 0,
    inline_bytes: int = 0,
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
        return await blobs.stage(content, limit_bytes=limit, inline_bytes=inline_bytes)
    except ContentLimitExceededError:
        raise _refusal(limit + 1, workspace=workspace, max_file_bytes=max_file_bytes) from None


async def charge_usage(uow: UnitOfWork, workspace: Workspace, delta: int) -> None:
    """Account `delta` bytes to the workspace in this unit of work, within its quota."""
    if not await uow.workspaces.add_used_bytes(workspace.workspace_id, delta):
        raise WorkspaceQuotaExceededError(workspace.workspace_id, workspace.quota_bytes)

from uuid import UUID

from domain.error import ChatHasActiveSandboxError
from usecase.common import commit_with, owned_workspace
from usecase.interface import ChatStorage, Clock, UnitOfWorkFactory


class DeleteWorkspace:
    """Delete the caller's workspace with all chats and files, unless a sandbox is active."""

    def __init__(self, uow: UnitOfWorkFactory, storage: ChatStorage, clock: Clock) -> None:
        self._uow = uow
        self._storage = storage
        self._clock = clock

    async def __call__(self, user_id: UUID) -> None:
        async with self._uow() as uow:
            workspace = await owned_workspace(uow, user_id, for_update=True)
            workspace_id = workspace.workspace_id
            if await uow.sandbox_sessions.exists_active_in_workspace(
                workspace_id, self._clock.now()
            ):
                raise ChatHasActiveSandboxError(None)
            await uow.sandbox_sessions.delete_by_workspace_id(workspace_id)
            await uow.chat_files.delete_by_workspace_id(workspace_id)
            await uow.chats.delete_by_workspace_id(workspace_id)
            await uow.workspaces.delete(workspace_id)
            change = await self._storage.delete_workspace(workspace_id)
            await commit_with(uow, change)
        await change.commit()

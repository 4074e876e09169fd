from uuid import UUID

from domain.error import ChatHasActiveSandboxError
from usecase.common import owned_workspace
from usecase.interface import Clock, UnitOfWorkFactory
from usecase.publish import after_commit
from usecase.store_ports import BlobStore, ChatViews


class DeleteWorkspace:
    """Delete the caller's workspace with all chats and files, unless a sandbox is active.

    The rows go in one commit, which is the delete; the directory and the blobs follow
    it, and a failure of theirs is left to the sweep and garbage collection.
    """

    def __init__(
        self, uow: UnitOfWorkFactory, blobs: BlobStore, views: ChatViews, clock: Clock
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._views = views
        self._clock = clock

    async def __call__(self, user_id: UUID) -> None:
        async with self._uow() as uow:
            workspace = await owned_workspace(uow, user_id, for_update=True)
            workspace_id = workspace.workspace_id
            if await uow.sandbox_sessions.exists_active_in_workspace(
                workspace_id, self._clock.now()
            ):
                raise ChatHasActiveSandboxError(None)
            released = await uow.inventory.of_workspace(workspace_id)
            await uow.sandbox_sessions.delete_by_workspace_id(workspace_id)
            await uow.chat_files.delete_by_workspace_id(workspace_id)
            await uow.chats.delete_by_workspace_id(workspace_id)
            await uow.workspaces.delete(workspace_id)
            await uow.commit()
        removal = self._views.remove_workspace(workspace_id)
        await after_commit(removal, 'removal of a workspace directory')
        await after_commit(self._blobs.release(released), 'release of a workspace')

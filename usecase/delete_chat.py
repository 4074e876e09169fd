from uuid import UUID

from domain.error import ChatHasActiveSandboxError
from usecase.common import owned_chat
from usecase.interface import Clock, UnitOfWorkFactory
from usecase.publish import after_commit
from usecase.store_ports import BlobStore, ChatViews


class DeleteChat:
    """Delete a chat with its directory, unless a sandbox session is active in it.

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

    async def __call__(self, user_id: UUID, chat_id: UUID) -> None:
        async with self._uow() as uow:
            workspace, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
            if await uow.sandbox_sessions.get_active_by_chat_id(chat_id, self._clock.now()):
                raise ChatHasActiveSandboxError(chat_id)
            freed = chat.history_bytes + await uow.inventory.chat_file_bytes(chat_id)
            released = await uow.inventory.of_chat(chat_id)
            await uow.sandbox_sessions.delete_by_chat_id(chat_id)
            await uow.chat_files.delete_by_chat_id(chat_id)
            await uow.chats.delete(chat_id)
            await uow.workspaces.add_used_bytes(workspace.workspace_id, -freed)
            await uow.commit()
        removal = self._views.remove_chat(workspace.workspace_id, chat_id)
        await after_commit(removal, 'removal of a chat directory')
        await after_commit(self._blobs.release(released), 'release of a chat')

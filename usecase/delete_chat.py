from uuid import UUID

from domain.error import ChatHasActiveSandboxError
from usecase.common import commit_with, owned_chat
from usecase.interface import ChatStorage, Clock, UnitOfWorkFactory


class DeleteChat:
    """Delete a chat with its directory, unless a sandbox session is active in it."""

    def __init__(self, uow: UnitOfWorkFactory, storage: ChatStorage, clock: Clock) -> None:
        self._uow = uow
        self._storage = storage
        self._clock = clock

    async def __call__(self, user_id: UUID, chat_id: UUID) -> None:
        async with self._uow() as uow:
            workspace, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
            if await uow.sandbox_sessions.get_active_by_chat_id(chat_id, self._clock.now()):
                raise ChatHasActiveSandboxError(chat_id)
            freed = chat.history_bytes + await uow.chat_files.total_size_by_chat_id(chat_id)
            await uow.sandbox_sessions.delete_by_chat_id(chat_id)
            await uow.chat_files.delete_by_chat_id(chat_id)
            await uow.chats.delete(chat_id)
            await uow.workspaces.add_used_bytes(workspace.workspace_id, -freed)
            change = await self._storage.delete_chat(chat)
            await commit_with(uow, change)
        await change.commit()

from uuid import UUID

from domain.chat import Chat
from usecase.common import owned_workspace
from usecase.interface import ChatStorage, Clock, IdGenerator, UnitOfWorkFactory


class CreateChat:
    """Create a chat in the caller's workspace with its directory and an empty history."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        storage: ChatStorage,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._uow = uow
        self._storage = storage
        self._clock = clock
        self._ids = ids

    async def __call__(self, user_id: UUID, title: str | None) -> Chat:
        async with self._uow() as uow:
            workspace = await owned_workspace(uow, user_id, for_update=True)
            now = self._clock.now()
            chat = Chat(
                chat_id=self._ids.new(),
                workspace_id=workspace.workspace_id,
                created_at=now,
                updated_at=now,
                title=title,
            )
            # the directory first: a chat row never exists without its directory; an empty
            # directory left by a failed commit holds no bytes and is harmless
            await self._storage.ensure_chat(chat)
            await uow.chats.save(chat)
            await uow.commit()
        return chat

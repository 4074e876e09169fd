from dataclasses import replace
from uuid import UUID

from domain.chat import Chat
from usecase.common import owned_chat
from usecase.interface import Clock, UnitOfWorkFactory


class RenameChat:
    """Set or clear the title of a chat."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def __call__(self, user_id: UUID, chat_id: UUID, title: str | None) -> Chat:
        async with self._uow() as uow:
            _, chat = await owned_chat(uow, user_id, chat_id, for_update=True)
            renamed = replace(chat, title=title, updated_at=self._clock.now())
            await uow.chats.save(renamed)
            await uow.commit()
        return renamed

from uuid import UUID

from domain.chat import Chat
from usecase.common import owned_chat
from usecase.interface import UnitOfWorkFactory


class GetChat:
    """One chat of the caller's workspace."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: UUID, chat_id: UUID) -> Chat:
        # owned_chat is one statement (the workspace and the chat, joined)
        async with self._uow(write=False, one_statement=True) as uow:
            _, chat = await owned_chat(uow, user_id, chat_id)
        return chat

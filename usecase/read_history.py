from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from domain.chat import Chat
from usecase.common import once_settled, owned_chat, primed
from usecase.interface import ChatStorage, UnitOfWorkFactory
from usecase.recover_storage import SettleChatChanges


@dataclass(frozen=True, slots=True)
class HistoryContent:
    chat: Chat
    chunks: AsyncIterator[bytes]


class ReadHistory:
    """The committed bytes of a chat's `history.md`, streamed; the file already opened."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        storage: ChatStorage,
        settle: SettleChatChanges | None = None,
    ) -> None:
        self._uow = uow
        self._storage = storage
        self._settle = settle

    async def __call__(self, user_id: UUID, chat_id: UUID) -> HistoryContent:
        read: list[Chat] = []

        async def attempt() -> HistoryContent:
            # owned_chat is one statement (the workspace and the chat, joined)
            async with self._uow(write=False, one_statement=True) as uow:
                _, chat = await owned_chat(uow, user_id, chat_id)
            read.append(chat)
            # opened now: a history put in flight is waited for (a fresh record each time)
            return HistoryContent(chat=chat, chunks=await primed(self._storage.read_history(chat)))

        async def settle() -> None:
            if self._settle is not None:
                await self._settle(read[-1].workspace_id, chat_id)

        return await once_settled(attempt, settle)

from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from domain.chat import Chat
from domain.error import StoredContentMissingError, StoredVersionChangingError
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
        try:
            return await self._read(user_id, chat_id)  # nearly always: one read
        except (StoredVersionChangingError, StoredContentMissingError):
            pass  # a history put in flight, or a delete: again, with a fresh record each time
        read: list[Chat] = []

        async def attempt() -> HistoryContent:
            return await self._read(user_id, chat_id, read)

        async def settle(missing: bool) -> None:
            if self._settle is not None and read:
                await self._settle(read[-1].workspace_id, chat_id, missing=missing)

        return await once_settled(attempt, repair=settle)

    async def _read(
        self, user_id: UUID, chat_id: UUID, read: list[Chat] | None = None
    ) -> HistoryContent:
        # owned_chat is one statement (the workspace and the chat, joined)
        async with self._uow(write=False, one_statement=True) as uow:
            _, chat = await owned_chat(uow, user_id, chat_id)
        if read is not None:
            read.append(chat)
        # opened now, so that a file of another version is found here
        return HistoryContent(chat=chat, chunks=await primed(self._storage.read_history(chat)))

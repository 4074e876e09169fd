from uuid import UUID

from domain.chat import ChatAttachmentName, ChatFile
from domain.page import PageKey
from repository.common import keyset_page
from repository.memory_store import MemoryRepository, MemoryStore
from usecase.interface import ChatFileRepository


class InMemoryChatFileRepository(MemoryRepository, ChatFileRepository):
    async def get(self, file_id: UUID) -> ChatFile | None:
        return self._store.chat_files.get(file_id)

    async def get_by_chat_id_and_name(
        self,
        chat_id: UUID,
        name: ChatAttachmentName,
    ) -> ChatFile | None:
        file_id = self._store.file_id_by_chat_and_name.get((chat_id, name.value))
        if file_id is None:
            return None
        return self._store.chat_files.get(file_id)

    async def list_by_chat_id(
        self,
        chat_id: UUID,
        *,
        limit: int | None = None,
        after: PageKey | None = None,
    ) -> list[ChatFile]:
        return keyset_page(
            (f for f in self._store.chat_files.values() if f.chat_id == chat_id),
            lambda f: (f.created_at, f.file_id),
            limit=limit,
            after=after,
        )

    async def list_by_chat_of_user(
        self, user_id: UUID, chat_id: UUID, *, limit: int, after: PageKey | None = None
    ) -> list[ChatFile]:
        chat = self._store.chats.get(chat_id)
        if chat is None or self._store.workspace_id_by_user_id.get(user_id) != chat.workspace_id:
            return []
        return await self.list_by_chat_id(chat_id, limit=limit, after=after)

    async def save(self, chat_file: ChatFile) -> None:
        store = self._for_write()
        key = (chat_file.chat_id, chat_file.name.value)
        existing_at_key = store.file_id_by_chat_and_name.get(key)
        if existing_at_key is not None and existing_at_key != chat_file.file_id:
            store.chat_files.pop(existing_at_key, None)
        _remove(store, chat_file.file_id)
        store.chat_files[chat_file.file_id] = chat_file
        store.file_id_by_chat_and_name[key] = chat_file.file_id

    async def delete(self, file_id: UUID) -> None:
        _remove(self._for_write(), file_id)

    async def delete_by_chat_id(self, chat_id: UUID) -> None:
        store = self._for_write()
        for file_id in [f.file_id for f in store.chat_files.values() if f.chat_id == chat_id]:
            _remove(store, file_id)

    async def delete_by_workspace_id(self, workspace_id: UUID) -> None:
        store = self._for_write()
        chat_ids = {c.chat_id for c in store.chats.values() if c.workspace_id == workspace_id}
        for file_id in [f.file_id for f in store.chat_files.values() if f.chat_id in chat_ids]:
            _remove(store, file_id)


def _remove(store: MemoryStore, file_id: UUID) -> None:
    chat_file = store.chat_files.pop(file_id, None)
    if chat_file is None:
        return
    key = (chat_file.chat_id, chat_file.name.value)
    if store.file_id_by_chat_and_name.get(key) == file_id:
        del store.file_id_by_chat_and_name[key]

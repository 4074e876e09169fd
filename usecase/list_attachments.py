from uuid import UUID

from domain.chat import ChatFile
from domain.page import Page, PageKey
from usecase.common import owned_chat
from usecase.interface import UnitOfWorkFactory


class ListAttachments:
    """One page of a chat's files by `created_at`, then `file_id`."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(
        self,
        user_id: UUID,
        chat_id: UUID,
        limit: int,
        after: PageKey | None,
    ) -> Page[ChatFile]:
        async with self._uow(write=False) as uow:
            await owned_chat(uow, user_id, chat_id)
            files = await uow.chat_files.list_by_chat_id(chat_id, limit=limit + 1, after=after)
        items = files[:limit]
        has_more = len(files) > limit
        next_key = PageKey(items[-1].created_at, items[-1].file_id) if has_more else None
        return Page(items=items, next_key=next_key)

from uuid import UUID

from domain.chat import ChatFile
from domain.page import Page, PageKey, page_of
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
        async with self._uow(write=False, one_statement=True) as uow:
            files = await uow.chat_files.list_by_chat_of_user(
                user_id, chat_id, limit=limit + 1, after=after
            )
        if not files:
            # the end of the list, or no such chat of the caller: only the second is an error
            async with self._uow(write=False, one_statement=True) as uow:
                await owned_chat(uow, user_id, chat_id)
        return page_of(
            files, limit, lambda chat_file: PageKey(chat_file.created_at, chat_file.file_id)
        )

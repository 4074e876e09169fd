from uuid import UUID

from domain.chat import Chat
from domain.page import Page, PageKey, page_of
from usecase.common import owned_workspace
from usecase.interface import UnitOfWorkFactory


class ListChats:
    """One page of the caller's chats by `created_at`, then `chat_id` (keyset pagination)."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, user_id: UUID, limit: int, after: PageKey | None) -> Page[Chat]:
        async with self._uow(write=False, one_statement=True) as uow:
            # one more than asked tells whether a next page exists without a count query
            chats = await uow.chats.list_by_user_id(user_id, limit=limit + 1, after=after)
        if not chats:
            # the end of the list, or no workspace at all: only the second is an error
            async with self._uow(write=False, one_statement=True) as uow:
                await owned_workspace(uow, user_id)
        return page_of(chats, limit, lambda chat: PageKey(chat.created_at, chat.chat_id))

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
        async with self._uow(write=False) as uow:
            workspace = await owned_workspace(uow, user_id)
            # one more than asked tells whether a next page exists without a count query
            chats = await uow.chats.list_by_workspace_id(
                workspace.workspace_id, limit=limit + 1, after=after
            )
        return page_of(chats, limit, lambda chat: PageKey(chat.created_at, chat.chat_id))

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response, status

from api.dependencies import ServicesDep, UserIdDep
from api.http import decode_cursor, encode_cursor
from api.problems import problem_responses
from api.schemas import ChatCreate, ChatOut, ChatPage, ChatUpdate
from domain.page import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, MIN_PAGE_LIMIT

router = APIRouter(prefix='/v1/chats', tags=['chats'], responses=problem_responses(401, 422))

Limit = Annotated[
    int,
    Query(ge=MIN_PAGE_LIMIT, le=MAX_PAGE_LIMIT, description='Page size, 1-200'),
]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description='`next_cursor` of the previous page'),
]


@router.post(
    '',
    summary='Create a chat',
    description='Creates the chat directory with an empty `history.md`. The body may be empty.',
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(404),
)
async def create_chat(
    user_id: UserIdDep,
    services: ServicesDep,
    request: Request,
    response: Response,
    body: Annotated[ChatCreate | None, Body()] = None,
) -> ChatOut:
    chat = await services.create_chat(user_id, body.title if body else None)
    response.headers['Location'] = str(request.url_for('get_chat', chat_id=chat.chat_id).path)
    return ChatOut.of(chat)


@router.get(
    '',
    summary="List the caller's chats",
    description='Ordered by `created_at`, then `chat_id`; every chat appears exactly once '
    'while paging, even as chats are created or deleted between pages.',
    responses=problem_responses(404),
)
async def list_chats(
    user_id: UserIdDep,
    services: ServicesDep,
    limit: Limit = DEFAULT_PAGE_LIMIT,
    cursor: Cursor = None,
) -> ChatPage:
    page = await services.list_chats(user_id, limit, decode_cursor(cursor))
    return ChatPage(
        items=[ChatOut.of(c) for c in page.items], next_cursor=encode_cursor(page.next_key)
    )


@router.get(
    '/{chat_id}',
    summary='One chat',
    responses=problem_responses(404),
)
async def get_chat(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> ChatOut:
    return ChatOut.of(await services.get_chat(user_id, chat_id))


@router.patch(
    '/{chat_id}',
    summary='Rename a chat',
    responses=problem_responses(404),
)
async def rename_chat(
    user_id: UserIdDep, services: ServicesDep, chat_id: UUID, body: ChatUpdate
) -> ChatOut:
    return ChatOut.of(await services.rename_chat(user_id, chat_id, body.title))


@router.delete(
    '/{chat_id}',
    summary='Delete a chat with its history and files',
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 409),
)
async def delete_chat(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> Response:
    await services.delete_chat(user_id, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

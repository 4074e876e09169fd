from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response, status

from api.dependencies import ServicesDep, UserIdDep, caller_id, services_of
from api.http import (
    CHAT_LIST,
    decode_cursor,
    encode_cursor,
    json_body_response,
    json_response,
    path_in_app,
)
from api.idempotency import IdempotencyKeyDep, idempotency_request, replayed
from api.openapi_docs import CHAT_CREATE_EXAMPLES, CHAT_UPDATE_EXAMPLES, GATEWAY_HEADERS, LOCATION
from api.problems import problem_responses
from api.schemas import ChatCreate, ChatOut, ChatPage, ChatUpdate, chat_page_json
from domain.chat import Chat
from domain.idempotency import RecordedResponse
from domain.page import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, MIN_PAGE_LIMIT

router = APIRouter(
    prefix='/v1/chats',
    tags=['chats'],
    responses=problem_responses(401, 'validation_error', 500, 503),
)
_NOT_FOUND = problem_responses('workspace_not_found', 'chat_not_found')
# the path of one chat, below the router's prefix (also its `Location`)
CHAT_PATH = '/{chat_id}'

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
    response_model=ChatOut,
    openapi_extra=GATEWAY_HEADERS,
    responses={
        201: {'description': 'Created', 'headers': {'Location': LOCATION}},
        **problem_responses(
            'workspace_not_found',
            'validation_error',
            'idempotency_key_reused',
            'request_too_large',
            'unsupported_media_type',
            'insufficient_storage',
        ),
    },
)
async def create_chat(
    request: Request,
    body: Annotated[ChatCreate | None, Body(openapi_examples=CHAT_CREATE_EXAMPLES)] = None,
    idempotency_key: IdempotencyKeyDep = None,
) -> Response:
    title = body.title if body else None

    def location(chat: Chat) -> str:
        return path_in_app(request, router.prefix + CHAT_PATH, chat_id=chat.chat_id)

    def created(chat: Chat, response: Response) -> ChatOut:
        response.headers['Location'] = location(chat)
        return ChatOut.of(chat)

    idempotency = idempotency_request(idempotency_key, request, {'title': title}, created)
    result = await services_of(request).create_chat(
        caller_id(request), title, idempotency=idempotency
    )
    if isinstance(result, RecordedResponse):
        return replayed(result)
    response = json_response(ChatOut.of(result), status.HTTP_201_CREATED)
    response.headers['Location'] = location(result)
    return response


@router.get(
    '',
    summary="List the caller's chats",
    response_description='One page of chats and the cursor of the next',
    description='Ordered by `created_at`, then `chat_id`; every chat appears exactly once '
    'while paging, even as chats are created or deleted between pages. Pass `next_cursor` '
    'back as `cursor` until it is `null`.',
    response_model=ChatPage,
    responses=problem_responses('workspace_not_found'),
    openapi_extra=GATEWAY_HEADERS,
)
async def list_chats(
    request: Request,
    limit: Limit = DEFAULT_PAGE_LIMIT,
    cursor: Cursor = None,
) -> Response:
    after = decode_cursor(cursor, CHAT_LIST)
    page = await services_of(request).list_chats(caller_id(request), limit, after)
    return json_body_response(chat_page_json(page.items, encode_cursor(page.next_key, CHAT_LIST)))


@router.get(
    CHAT_PATH,
    summary='One chat',
    response_description='The chat',
    description="The chat with its `history_bytes` and `file_count`. Another user's chat is "
    '`404 chat_not_found`, exactly like a missing one.',
    response_model=ChatOut,
    responses=_NOT_FOUND,
    openapi_extra=GATEWAY_HEADERS,
)
async def get_chat(request: Request, chat_id: UUID) -> Response:
    chat = await services_of(request).get_chat(caller_id(request), chat_id)
    return json_response(ChatOut.of(chat))


@router.patch(
    CHAT_PATH,
    summary='Rename a chat',
    response_description='The chat with its new title',
    description='Sets the title (at most 200 characters); `null` removes it. `updated_at` '
    'moves on.',
    responses={**_NOT_FOUND, **problem_responses('request_too_large', 'unsupported_media_type')},
)
async def rename_chat(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    body: Annotated[ChatUpdate, Body(openapi_examples=CHAT_UPDATE_EXAMPLES)],
) -> ChatOut:
    return ChatOut.of(await services.rename_chat(user_id, chat_id, body.title))


@router.delete(
    CHAT_PATH,
    summary='Delete a chat with its history and files',
    description='Removes the chat directory, `history.md` and every attachment, and frees '
    'their bytes from the quota. `409 chat_has_active_sandbox` while a sandbox session is '
    'active.',
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        204: {'description': 'Deleted'},
        **_NOT_FOUND,
        **problem_responses('chat_has_active_sandbox'),
    },
)
async def delete_chat(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> Response:
    await services.delete_chat(user_id, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import StreamingResponse

from api.body import body_stream, declared_length
from api.dependencies import caller_id, services_of
from api.download import safety_headers
from api.file_response import SMALL_BODY_BYTES, HeadersOnlyResponse, read_small
from api.http import (
    conditions_of,
    field_value,
    json_response,
    not_modified,
    parse_etags,
    precondition_failed,
    quote_etag,
)
from api.idempotency import IdempotencyKeyDep, idempotency_request, replayed
from api.openapi_docs import (
    GATEWAY_HEADERS,
    HISTORY_BODY,
    HISTORY_READ_HEADERS,
    HISTORY_READ_RESPONSES,
    HISTORY_WRITTEN_HEADERS,
)
from api.problems import problem_responses
from api.schemas import HistoryWritten
from domain.chat import Chat
from domain.error import HistoryPreconditionFailedError
from domain.idempotency import RecordedResponse
from usecase.write_history import WriteHistory

router = APIRouter(
    prefix='/v1/chats/{chat_id}/history',
    tags=['history'],
    responses=problem_responses(
        401, 'validation_error', 500, 503, 'workspace_not_found', 'chat_not_found'
    ),
)

HISTORY_MEDIA_TYPE = 'text/markdown; charset=utf-8'
_WRITE_RESPONSES = {
    200: {'description': 'Written', 'headers': HISTORY_WRITTEN_HEADERS},
    **problem_responses(
        'precondition_failed',
        413,
        'invalid_history_encoding',
        'validation_error',
        'insufficient_storage',
        'idempotency_key_reused',
    ),
}
IfMatch = Annotated[
    str | None,
    Header(description='Apply only if the history still has this ETag (else 412)'),
]


def _written(chat: Chat) -> HistoryWritten:
    return HistoryWritten(etag=quote_etag(chat.history_version), size_bytes=chat.history_bytes)


def _respond(chat: Chat, response: Response) -> HistoryWritten:
    """The answer an `Idempotency-Key` records: the body, and the `ETag` header."""
    written = _written(chat)
    response.headers['ETag'] = written.etag
    return written


async def _write(
    write: WriteHistory,
    user_id: UUID,
    chat_id: UUID,
    request: Request,
    idempotency_key: str | None,
) -> Response:
    """PUT and POST differ only in the use case (`AppendHistory` is a `WriteHistory`).

    `If-Match` is read here, every line of it: the routes' parameter (for the document)
    would hold the first line only."""
    if_match = field_value(request, 'if-match')
    result = await write(
        user_id,
        chat_id,
        body_stream(request),
        declared_size=declared_length(request),
        if_match=parse_etags(if_match, weak=False),
        # the use case mixes the body's sha256 into the fingerprint
        idempotency=idempotency_request(idempotency_key, request, {'if_match': if_match}, _respond),
    )
    if isinstance(result, RecordedResponse):
        return replayed(result)
    written = _written(result)
    response = json_response(written)
    response.headers['ETag'] = written.etag
    return response


@router.get(
    '',
    summary="Read the chat's history.md",
    description='Streamed as `text/markdown; charset=utf-8` with a strong `ETag`; send it back '
    'in `If-None-Match` to get `304` while it is unchanged, or in `If-Match` on a write (on '
    'a read, `If-Match` naming another version is `412`). `HEAD` answers the same status '
    'and headers without the body.',
    response_class=StreamingResponse,
    responses=HISTORY_READ_RESPONSES,
    openapi_extra=HISTORY_READ_HEADERS,
)
async def read_history(request: Request, chat_id: UUID) -> Response:
    return await _history_response(request, chat_id, head=False)


@router.head('', include_in_schema=False)
async def read_history_head(request: Request, chat_id: UUID) -> Response:
    """What the GET answers, without the body (RFC 9110 9.3.2)."""
    return await _history_response(request, chat_id, head=True)


async def _history_response(request: Request, chat_id: UUID, *, head: bool) -> Response:
    content = await services_of(request).read_history(caller_id(request), chat_id)
    version = content.chat.history_version
    etag = quote_etag(version)
    conditions = conditions_of(request)
    if precondition_failed(conditions.if_match, version):
        raise HistoryPreconditionFailedError(chat_id)
    if not_modified(conditions.if_none_match, version):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={'ETag': etag})
    # the history is written by users and models: a browser must never sniff or run it
    headers = {'ETag': etag, **safety_headers()}
    if head:
        # the stream the use case opened is dropped unread: closed as a GET's is when its
        # client goes away
        return HeadersOnlyResponse(
            {
                **headers,
                'Content-Type': HISTORY_MEDIA_TYPE,
                'Content-Length': str(content.chat.history_bytes),
            }
        )
    if content.chat.history_bytes <= SMALL_BODY_BYTES:
        # most histories: one read, one body, no stream
        body = await read_small(content.chunks)
        return Response(body, media_type=HISTORY_MEDIA_TYPE, headers=headers)
    return StreamingResponse(
        content.chunks,  # already opened (primed) by the use case
        media_type=HISTORY_MEDIA_TYPE,
        headers={**headers, 'Content-Length': str(content.chat.history_bytes)},
    )


@router.put(
    '',
    summary='Replace the whole history',
    description='The body is the new history, UTF-8 text. Atomic: readers see the old or '
    'the new history. With `If-Match`, the write applies only to that version.',
    response_model=HistoryWritten,
    responses=_WRITE_RESPONSES,
    openapi_extra={**HISTORY_BODY, **GATEWAY_HEADERS},
)
async def write_history(
    chat_id: UUID,
    request: Request,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKeyDep = None,
) -> Response:
    del if_match  # declared for the document; `_write` reads every line of it
    return await _write(
        services_of(request).write_history,
        caller_id(request),
        chat_id,
        request,
        idempotency_key,
    )


@router.post(
    '',
    summary='Append to the history',
    description='Appends the body (UTF-8 text) atomically and durably; concurrent appends are '
    'never interleaved nor lost. With `If-Match`, the append applies only to that version.',
    response_model=HistoryWritten,
    responses=_WRITE_RESPONSES,
    openapi_extra={**HISTORY_BODY, **GATEWAY_HEADERS},
)
async def append_history(
    chat_id: UUID,
    request: Request,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKeyDep = None,
) -> Response:
    del if_match  # declared for the document; `_write` reads every line of it
    return await _write(
        services_of(request).append_history,
        caller_id(request),
        chat_id,
        request,
        idempotency_key,
    )

from typing import Any
from urllib.parse import unquote_to_bytes
from uuid import UUID

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import StreamingResponse

from api.body import body_stream, checked_content_type, declared_length
from api.dependencies import ServicesDep, UserIdDep, caller_id, services_of
from api.download import attachment_response
from api.http import (
    conditions_of,
    decode_cursor,
    encode_cursor,
    json_body_response,
    path_in_app,
)
from api.idempotency import IdempotencyKeyDep, idempotency_request, replayed
from api.multipart import MultipartUpload, multipart_boundary
from api.openapi_docs import (
    DOWNLOAD_HEADERS,
    DOWNLOAD_RESPONSES,
    GATEWAY_HEADERS,
    LOCATION,
    MULTIPART_BODY,
    RAW_BODY,
)
from api.problems import problem_responses
from api.routers.chats import Cursor, Limit
from api.routing import ANYTHING
from api.schemas import ChatFileOut, ChatFilePage, file_page_json
from domain.idempotency import RecordedResponse
from domain.page import DEFAULT_PAGE_LIMIT
from usecase.idempotency import IdempotencyRequest
from usecase.upload_attachment import UploadedAttachment

# the path of one file, below the router's prefix (also its `Location`)
FILE_PATH = '/{file_id}'

router = APIRouter(
    prefix='/v1/chats/{chat_id}/files',
    tags=['files'],
    responses=problem_responses(
        401,
        'validation_error',
        500,
        503,
        'workspace_not_found',
        'chat_not_found',
        'chat_file_not_found',
    ),
)
_CHAT_NOT_FOUND = problem_responses('workspace_not_found', 'chat_not_found')
_UPLOADED: dict[int | str, dict[str, Any]] = {
    201: {'description': 'Stored', 'headers': {'Location': LOCATION}},
    **_CHAT_NOT_FOUND,
    **problem_responses(
        413,
        'invalid_attachment_name',
        'reserved_attachment_name',
        'idempotency_key_reused',
        'validation_error',
        'insufficient_storage',
    ),
}


_REPLACED: dict[int | str, dict[str, Any]] = {
    201: {'description': 'Stored as a new file', 'headers': {'Location': LOCATION}},
    200: {
        'model': ChatFileOut,
        'description': 'Replaced a file of the same name (new `file_id`)',
        'headers': {'Location': LOCATION},
    },
}


_BY_NAME = b'/by-name/'


def undecoded_name(request: Request, name: str) -> str:
    """The name of a raw upload as the client sent it: the server decodes the path with
    U+FFFD for bytes that are not UTF-8, under which different names would collide. Taken
    again from the raw path, such bytes stay lone surrogates, which the name refuses
    (`invalid_attachment_name`)."""
    raw_path = request.scope.get('raw_path')
    if '\ufffd' not in name or not isinstance(raw_path, bytes) or _BY_NAME not in raw_path:
        return name
    return unquote_to_bytes(raw_path.split(_BY_NAME, 1)[1]).decode('utf-8', 'surrogateescape')


def _created(
    uploaded: UploadedAttachment, request: Request, response: Response, *, raw: bool
) -> ChatFileOut:
    """The contract: the raw `PUT` answers `200` when it replaced a file, the multipart
    route `201` either way."""
    chat_file = uploaded.chat_file
    replaced = raw and uploaded.replaced
    response.status_code = status.HTTP_200_OK if replaced else status.HTTP_201_CREATED
    response.headers['Location'] = path_in_app(
        request, router.prefix + FILE_PATH, chat_id=chat_file.chat_id, file_id=chat_file.file_id
    )
    return ChatFileOut.of(chat_file)


def _idempotency(
    key: str | None, request: Request, body: dict[str, str | None], *, raw: bool
) -> IdempotencyRequest[UploadedAttachment] | None:
    """The upload's `Idempotency-Key` request; the use case mixes in the content's sha256."""
    return idempotency_request(
        key,
        request,
        body,
        lambda uploaded, response: _created(uploaded, request, response, raw=raw),
    )


def _answer(
    result: UploadedAttachment | RecordedResponse,
    request: Request,
    response: Response,
    *,
    raw: bool,
) -> ChatFileOut | Response:
    if isinstance(result, RecordedResponse):
        return replayed(result)
    return _created(result, request, response, raw=raw)


@router.post(
    '',
    summary='Upload a file (multipart)',
    description='One part `file`; the stored name is the optional `name` field (sent before '
    "`file`) or the part's filename. A file of the same name is replaced (new `file_id`, "
    'still `201`); until the upload is committed the old one stays readable.',
    status_code=status.HTTP_201_CREATED,
    responses={**_UPLOADED, **problem_responses('unsupported_media_type')},
    openapi_extra=MULTIPART_BODY,
    response_model=ChatFileOut,
)
async def upload_multipart(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyDep = None,
) -> ChatFileOut | Response:
    form = MultipartUpload(
        body_stream(request), multipart_boundary(request.headers.get('content-type'))
    )
    file_part = await form.read_until_file()
    name = form.name_field if form.name_field is not None else file_part.filename or ''
    result = await services.upload_attachment(
        user_id,
        chat_id,
        name,
        file_part.content_type,
        form.file_chunks(),
        idempotency=_idempotency(
            idempotency_key,
            request,
            {'name': name, 'content_type': file_part.content_type},
            raw=False,
        ),
    )
    return _answer(result, request, response, raw=False)


@router.put(
    f'/by-name/{{name:{ANYTHING}}}',
    summary='Upload a file by name (raw body)',
    description='The raw body is the content and `Content-Type` is stored as given. `201` '
    'when new, `200` when it replaced a file of that name.',
    status_code=status.HTTP_201_CREATED,
    responses={**_UPLOADED, **_REPLACED},
    openapi_extra=RAW_BODY,
    response_model=ChatFileOut,
)
async def upload_raw(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    name: str,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKeyDep = None,
) -> ChatFileOut | Response:
    content_type = checked_content_type(
        request.headers.get('content-type'), ['header', 'content-type']
    )
    result = await services.upload_attachment(
        user_id,
        chat_id,
        undecoded_name(request, name),
        content_type,
        body_stream(request),
        declared_size=declared_length(request),
        idempotency=_idempotency(
            idempotency_key, request, {'content_type': content_type}, raw=True
        ),
    )
    return _answer(result, request, response, raw=True)


@router.get(
    '',
    summary="List a chat's files",
    response_description="One page of the chat's file records and the cursor of the next",
    description='Ordered by `created_at`, then `file_id`. Pass `next_cursor` back as `cursor` '
    'until it is `null`.',
    responses=_CHAT_NOT_FOUND,
    response_model=ChatFilePage,
    openapi_extra=GATEWAY_HEADERS,
)
async def list_files(
    request: Request,
    chat_id: UUID,
    limit: Limit = DEFAULT_PAGE_LIMIT,
    cursor: Cursor = None,
) -> Response:
    page = await services_of(request).list_attachments(
        caller_id(request), chat_id, limit, decode_cursor(cursor, str(chat_id))
    )
    # written from the domain objects; `response_model` stays for the OpenAPI document
    return json_body_response(
        file_page_json(page.items, encode_cursor(page.next_key, str(chat_id)))
    )


@router.get(
    FILE_PATH,
    summary="One file's record",
    response_description="The file's record",
    description='Name, stored `content_type`, size and sha256 (the download `ETag`).',
)
async def get_file(
    user_id: UserIdDep, services: ServicesDep, chat_id: UUID, file_id: UUID
) -> ChatFileOut:
    return ChatFileOut.of(await services.get_attachment(user_id, chat_id, file_id))


@router.get(
    FILE_PATH + '/content',
    summary="Download a file's bytes",
    description='Streamed; supports one `Range` (206; with `If-Range`, only while it names '
    'the current ETag), `If-None-Match` (304) and `If-Match` (412 unless it names the '
    'current ETag); always served as an attachment that a browser will not render. '
    '`HEAD` answers the same status and headers without the body.',
    response_class=StreamingResponse,
    responses=DOWNLOAD_RESPONSES,
    openapi_extra=DOWNLOAD_HEADERS,
)
async def download_file(request: Request, chat_id: UUID, file_id: UUID) -> Response:
    content = await services_of(request).read_attachment(caller_id(request), chat_id, file_id)
    return await attachment_response(content, conditions_of(request))


# HEAD (RFC 9110 9.3.2: what `curl -I` and download managers probe with) answers what
# the GET would, without the body; the document lists the GET only, whose description
# says so
@router.head(FILE_PATH + '/content', include_in_schema=False)
async def download_file_head(request: Request, chat_id: UUID, file_id: UUID) -> Response:
    content = await services_of(request).read_attachment(caller_id(request), chat_id, file_id)
    return await attachment_response(content, conditions_of(request), head=True)


@router.delete(
    FILE_PATH,
    summary='Delete a file',
    description='Its bytes are freed from the quota; signed links to it stop working.',
    status_code=status.HTTP_204_NO_CONTENT,
    responses={204: {'description': 'Deleted'}},
)
async def delete_file(
    user_id: UserIdDep, services: ServicesDep, chat_id: UUID, file_id: UUID
) -> Response:
    await services.delete_attachment(user_id, chat_id, file_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    '',
    summary='Delete every file of a chat',
    description='Every attachment goes; `history.md` stays.',
    status_code=status.HTTP_204_NO_CONTENT,
    responses={204: {'description': 'Deleted'}, **_CHAT_NOT_FOUND},
)
async def clear_files(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> Response:
    await services.clear_attachments(user_id, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

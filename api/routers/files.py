from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import StreamingResponse

from api.body import body_stream, declared_length
from api.dependencies import ServicesDep, UserIdDep
from api.http import (
    content_disposition,
    decode_cursor,
    encode_cursor,
    not_modified,
    parse_range,
    primed,
    quote_etag,
)
from api.multipart import MultipartUpload, multipart_boundary
from api.problems import problem_responses
from api.routers.chats import Cursor, Limit
from api.routing import ANYTHING
from api.schemas import ChatFileOut, ChatFilePage
from domain.page import DEFAULT_PAGE_LIMIT
from usecase.upload_attachment import UploadedAttachment

router = APIRouter(
    prefix='/v1/chats/{chat_id}/files',
    tags=['files'],
    responses=problem_responses(401, 404, 422),
)

DEFAULT_CONTENT_TYPE = 'application/octet-stream'
# stored bytes are never rendered as a page: no scripts, no plugins, sandboxed
CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"

_MULTIPART_BODY = {
    'requestBody': {
        'required': True,
        'content': {
            'multipart/form-data': {
                'schema': {
                    'type': 'object',
                    'required': ['file'],
                    'properties': {
                        'name': {
                            'type': 'string',
                            'description': 'File name to store under; must come before `file`',
                        },
                        'file': {'type': 'string', 'format': 'binary'},
                    },
                },
            }
        },
    }
}
_RAW_BODY = {
    'requestBody': {
        'required': True,
        'content': {'*/*': {'schema': {'type': 'string', 'format': 'binary'}}},
    }
}


def _created(uploaded: UploadedAttachment, request: Request, response: Response) -> ChatFileOut:
    chat_file = uploaded.chat_file
    response.status_code = status.HTTP_200_OK if uploaded.replaced else status.HTTP_201_CREATED
    response.headers['Location'] = str(
        request.url_for('get_file', chat_id=chat_file.chat_id, file_id=chat_file.file_id).path
    )
    return ChatFileOut.of(chat_file)


@router.post(
    '',
    summary='Upload a file (multipart)',
    description='One part `file`; the stored name is the optional `name` field (sent before '
    "`file`) or the part's filename. A file of the same name is replaced (new `file_id`); "
    'until the upload is committed the old one stays readable.',
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {'model': ChatFileOut, 'description': 'Replaced a file of the same name'},
        **problem_responses(413, 415, 507),
    },
    openapi_extra=_MULTIPART_BODY,
)
async def upload_multipart(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    request: Request,
    response: Response,
) -> ChatFileOut:
    form = MultipartUpload(
        body_stream(request), multipart_boundary(request.headers.get('content-type'))
    )
    file_part = await form.read_until_file()
    uploaded = await services.upload_attachment(
        user_id,
        chat_id,
        form.name_field if form.name_field is not None else file_part.filename or '',
        file_part.content_type,
        form.file_chunks(),
    )
    return _created(uploaded, request, response)


@router.put(
    f'/by-name/{{name:{ANYTHING}}}',
    summary='Upload a file by name (raw body)',
    description='The raw body is the content and `Content-Type` is stored as given. `201` '
    'when new, `200` when it replaced a file of that name.',
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {'model': ChatFileOut, 'description': 'Replaced a file of the same name'},
        **problem_responses(413, 507),
    },
    openapi_extra=_RAW_BODY,
)
async def upload_raw(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    name: str,
    request: Request,
    response: Response,
) -> ChatFileOut:
    uploaded = await services.upload_attachment(
        user_id,
        chat_id,
        name,
        request.headers.get('content-type'),
        body_stream(request),
        declared_size=declared_length(request),
    )
    return _created(uploaded, request, response)


@router.get(
    '',
    summary="List a chat's files",
    description='Ordered by `created_at`, then `file_id`.',
)
async def list_files(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    limit: Limit = DEFAULT_PAGE_LIMIT,
    cursor: Cursor = None,
) -> ChatFilePage:
    page = await services.list_attachments(user_id, chat_id, limit, decode_cursor(cursor))
    return ChatFilePage(
        items=[ChatFileOut.of(f) for f in page.items], next_cursor=encode_cursor(page.next_key)
    )


@router.get('/{file_id}', summary="One file's record")
async def get_file(
    user_id: UserIdDep, services: ServicesDep, chat_id: UUID, file_id: UUID
) -> ChatFileOut:
    return ChatFileOut.of(await services.get_attachment(user_id, chat_id, file_id))


@router.get(
    '/{file_id}/content',
    summary="Download a file's bytes",
    description='Streamed; supports one `Range` (206), `If-None-Match` (304); always served '
    'as an attachment that a browser will not render.',
    response_class=StreamingResponse,
    responses={
        200: {
            'description': 'The bytes',
            'content': {
                'application/octet-stream': {'schema': {'type': 'string', 'format': 'binary'}}
            },
        },
        206: {'description': 'The requested range'},
        304: {'description': 'Not modified'},
        **problem_responses(416),
    },
)
async def download_file(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    file_id: UUID,
    range_header: Annotated[str | None, Header(alias='range')] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    content = await services.read_attachment(user_id, chat_id, file_id)
    chat_file = content.chat_file
    etag = quote_etag(chat_file.sha256)
    headers = {
        'ETag': etag,
        'Accept-Ranges': 'bytes',
        'Content-Disposition': content_disposition(chat_file.name.value),
        'X-Content-Type-Options': 'nosniff',
        'Content-Security-Policy': CONTENT_SECURITY_POLICY,
    }
    if not_modified(if_none_match, chat_file.sha256):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    byte_range = parse_range(range_header, chat_file.size_bytes)
    # set as a header, not as media_type: Starlette would append a charset to text/* types
    headers['Content-Type'] = chat_file.content_type or DEFAULT_CONTENT_TYPE
    if byte_range is None:
        headers['Content-Length'] = str(chat_file.size_bytes)
        return StreamingResponse(await primed(content.open()), headers=headers)
    headers['Content-Length'] = str(byte_range.length)
    headers['Content-Range'] = f'bytes {byte_range.first}-{byte_range.last}/{chat_file.size_bytes}'
    return StreamingResponse(
        await primed(content.open(byte_range)),
        status_code=status.HTTP_206_PARTIAL_CONTENT,
        headers=headers,
    )


@router.delete(
    '/{file_id}',
    summary='Delete a file',
    status_code=status.HTTP_204_NO_CONTENT,
)
async def delete_file(
    user_id: UserIdDep, services: ServicesDep, chat_id: UUID, file_id: UUID
) -> Response:
    await services.delete_attachment(user_id, chat_id, file_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    '',
    summary='Delete every file of a chat',
    description='`history.md` stays.',
    status_code=status.HTTP_204_NO_CONTENT,
)
async def clear_files(user_id: UserIdDep, services: ServicesDep, chat_id: UUID) -> Response:
    await services.clear_attachments(user_id, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

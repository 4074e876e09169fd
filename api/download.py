"""One way to serve a stored file's bytes, shared by `/content` and signed links."""

from fastapi import Response, status
from fastapi.responses import StreamingResponse

from api.file_response import (
    SMALL_BODY_BYTES,
    HeadersOnlyResponse,
    WholeFileResponse,
    read_small,
)
from api.http import (
    Conditions,
    content_disposition,
    not_modified,
    parse_range,
    precondition_failed,
    quote_etag,
    range_applies,
)
from api.problems import ApiProblem
from domain.content import ByteRange
from usecase.common import primed
from usecase.get_attachment import AttachmentContent

DEFAULT_CONTENT_TYPE = 'application/octet-stream'
# stored bytes are never rendered as a page: no scripts, no plugins, sandboxed
CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"


def safety_headers() -> dict[str, str]:
    """What keeps a browser from rendering or sniffing a download."""
    return {
        'X-Content-Type-Options': 'nosniff',
        'Content-Security-Policy': CONTENT_SECURITY_POLICY,
    }


def file_precondition_failed() -> ApiProblem:
    return ApiProblem(
        'precondition_failed', 412, 'If-Match does not name the current version of the file.'
    )


async def attachment_response(
    content: AttachmentContent, conditions: Conditions, *, head: bool = False
) -> Response:
    """The file's bytes: `412` for an `If-Match` that names another version, `304` for a
    matching `If-None-Match`, `206` for one satisfiable `Range` (unless an `If-Range`
    names another version), `416` for one past the end, else `200`; always as an
    attachment. `head`: the same status and headers, without the body."""
    chat_file = content.chat_file
    headers = {
        'ETag': quote_etag(chat_file.sha256),
        'Accept-Ranges': 'bytes',
        'Content-Disposition': content_disposition(chat_file.name.value),
        **safety_headers(),
    }
    if precondition_failed(conditions.if_match, chat_file.sha256):
        raise file_precondition_failed()
    if not_modified(conditions.if_none_match, chat_file.sha256):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    byte_range = (
        parse_range(conditions.range, chat_file.size_bytes)
        if range_applies(conditions.if_range, chat_file.sha256)
        else None
    )
    # set as a header, not as media_type: Starlette would append a charset to text/* types
    headers['Content-Type'] = chat_file.content_type or DEFAULT_CONTENT_TYPE
    if head:
        return await _head_response(content, byte_range, headers)
    if byte_range is None:
        if chat_file.size_bytes <= SMALL_BODY_BYTES:
            # Content-Length from the bytes read: a file changed in place is never misframed
            return Response(await read_small(content.open()), headers=headers)
        headers['Content-Length'] = str(chat_file.size_bytes)
        return WholeFileResponse(content.path, content.open, headers)
    headers['Content-Length'] = str(byte_range.length)
    headers['Content-Range'] = f'bytes {byte_range.first}-{byte_range.last}/{chat_file.size_bytes}'
    return StreamingResponse(
        await primed(content.open(byte_range)),
        status_code=status.HTTP_206_PARTIAL_CONTENT,
        headers=headers,
    )


async def _head_response(
    content: AttachmentContent, byte_range: ByteRange | None, headers: dict[str, str]
) -> Response:
    """A HEAD's answer: the GET's status and headers. One byte (none of an empty file) is
    read, as a GET would begin, so that a missing or tampered file, or a replacement in
    flight, answers as it would for the GET; the rest of the file is never read."""
    size = content.chat_file.size_bytes
    first = 0 if byte_range is None else byte_range.first
    await read_small(content.open(ByteRange(first, first) if size else None))
    if byte_range is None:
        headers['Content-Length'] = str(size)
        return HeadersOnlyResponse(headers)
    headers['Content-Length'] = str(byte_range.length)
    headers['Content-Range'] = f'bytes {byte_range.first}-{byte_range.last}/{size}'
    return HeadersOnlyResponse(headers, status.HTTP_206_PARTIAL_CONTENT)

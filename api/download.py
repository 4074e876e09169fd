"""One way to serve a stored file's bytes, shared by `/content` and signed links."""

from fastapi import Response, status
from fastapi.responses import StreamingResponse

from api.file_response import SMALL_BODY_BYTES, WholeFileResponse, read_small
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


async def attachment_response(content: AttachmentContent, conditions: Conditions) -> Response:
    """The file's bytes: `412` for an `If-Match` that names another version, `304` for a
    matching `If-None-Match`, `206` for one satisfiable `Range` (unless an `If-Range`
    names another version), `416` for one past the end, else `200`; always as an
    attachment."""
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
    if byte_range is None:
        if chat_file.size_bytes <= SMALL_BODY_BYTES:
            # Content-Length from the bytes read: a file changed in place is never misframed
            return Response(await read_small(content.open()), headers=headers)
        headers['Content-Length'] = str(chat_file.size_bytes)
        return WholeFileResponse(content.sendable, content.open, headers)
    headers['Content-Length'] = str(byte_range.length)
    headers['Content-Range'] = f'bytes {byte_range.first}-{byte_range.last}/{chat_file.size_bytes}'
    return StreamingResponse(
        await primed(content.open(byte_range)),
        status_code=status.HTTP_206_PARTIAL_CONTENT,
        headers=headers,
    )

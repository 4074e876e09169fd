"""Signed download links: made under `/v1` by the file's owner, used outside it by anyone
holding the URL (a browser cannot add `X-User-Id` or the gateway token; the signature is
the credential)."""

import re
from typing import Annotated
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.body import parsed_json_body
from api.container import Services
from api.dependencies import ServicesDep, UserIdDep, services_of
from api.download import attachment_response
from api.http import conditions_of, path_in_app
from api.openapi_docs import DOWNLOAD_RESPONSES, LINK_DOWNLOAD_HEADERS, LINK_REQUEST_EXAMPLES
from api.problems import ApiProblem, problem_responses
from api.schemas import FILE_ID, Timestamp, WholeNumber
from domain.error import InvalidLinkError
from usecase.get_attachment import AttachmentContent
from usecase.signed_link import MAX_LINK_SECONDS, MIN_LINK_SECONDS

router = APIRouter(tags=['files'])
# where a signed link downloads (also the path of the link it makes)
LINK_PATH = '/links/{file_id}'

LINK_EXAMPLE_URL = f'/links/{FILE_ID}?expires=1795457530&signature=Zm9vYmFy…'


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra='forbid', json_schema_extra={'example': {'expires_in': 600}})

    expires_in: WholeNumber = Field(
        ge=MIN_LINK_SECONDS,
        le=MAX_LINK_SECONDS,
        description='Seconds the link stays valid',
    )


class LinkOut(BaseModel):
    model_config = ConfigDict(
        title='DownloadLink',
        json_schema_extra={
            'example': {'url': LINK_EXAMPLE_URL, 'expires_at': '2026-11-23T18:12:10.000000Z'}
        },
    )

    url: str = Field(
        description='Root-relative: prefix it with the public origin of the gateway that '
        'serves this service'
    )
    expires_at: Timestamp = Field(description='The link answers 403 from this instant on')


def links_off() -> ApiProblem:
    return ApiProblem('not_found', 404, 'Signed download links are not enabled on this service.')


async def require_links(request: Request) -> None:
    """Without `STORAGE_LINK_SECRET` the route does not exist (ADR 018): `404` before its
    path and body are looked at (a route dependency is solved before either)."""
    if services_of(request).create_download_link is None:
        raise links_off()


# the body, parsed by the route after `require_links`: declared here so that the
# document does not depend on the settings
_LINK_BODY = {
    'requestBody': {
        'required': True,
        'content': {
            'application/json': {
                'schema': {'$ref': '#/components/schemas/LinkRequest'},
                'examples': LINK_REQUEST_EXAMPLES,
            }
        },
    }
}


@router.post(
    '/v1/chats/{chat_id}/files/{file_id}/link',
    summary='Make a signed download link',
    description='The URL serves the bytes like `/content`, without `X-User-Id` or the '
    'gateway token, until `expires_at` or until the file is replaced or deleted. '
    '`404 not_found` when the service has no `STORAGE_LINK_SECRET`.',
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {'description': 'The link; prefix `url` with the gateway origin'},
        **problem_responses(
            401,
            'validation_error',
            500,
            503,
            'workspace_not_found',
            'chat_not_found',
            'chat_file_not_found',
            'not_found',
            'request_too_large',
            'unsupported_media_type',
        ),
    },
    dependencies=[Depends(require_links)],
    openapi_extra=_LINK_BODY,
)
async def create_link(
    user_id: UserIdDep,
    services: ServicesDep,
    chat_id: UUID,
    file_id: UUID,
    request: Request,
) -> LinkOut:
    create = services.create_download_link
    if create is None:  # `require_links` answered already
        raise links_off()
    body = await parsed_json_body(request, LinkRequest)
    link = await create(user_id, chat_id, file_id, body.expires_in)
    path = path_in_app(request, LINK_PATH, file_id=link.file_id)
    query = urlencode({'expires': link.expires, 'signature': link.signature})
    return LinkOut(url=f'{path}?{query}', expires_at=link.expires_at)


_UNIX_SECONDS = re.compile('[1-9][0-9]{0,18}')


def _link_fields(request: Request, file_id: str) -> tuple[UUID, int, str]:
    """A link's file id, expiry and signature, spelled exactly as `create_link` writes
    them (the id in its usual lower-case form, the expiry in plain digits, each query
    member once); anything else is an invalid link, not a 422."""
    query = request.query_params
    expires, signature = query.getlist('expires'), query.getlist('signature')
    if len(expires) != 1 or len(signature) != 1 or not _UNIX_SECONDS.fullmatch(expires[0]):
        raise InvalidLinkError
    try:
        link_file_id = UUID(file_id)
    except ValueError:
        raise InvalidLinkError from None
    if str(link_file_id) != file_id:
        raise InvalidLinkError
    return link_file_id, int(expires[0]), signature[0]


@router.get(
    LINK_PATH,
    summary='Download through a signed link',
    description='No `X-User-Id`: the signature is the credential. Served exactly like '
    '`/content` (one `Range` → 206, `If-Range`, `If-None-Match` → 304, `If-Match` → 412); '
    '`403 invalid_link` when the link is tampered with, expired, its file replaced or '
    'deleted, or links are off. `HEAD` answers the same status and headers without the '
    'body.',
    response_class=StreamingResponse,
    responses={**DOWNLOAD_RESPONSES, **problem_responses('invalid_link', 500, 503)},
    openapi_extra=LINK_DOWNLOAD_HEADERS,
)
async def download_by_link(
    request: Request,
    services: ServicesDep,
    file_id: str,
    expires: Annotated[str | None, Query(description='Unix seconds')] = None,
    signature: Annotated[str | None, Query(description='base64url HMAC-SHA256')] = None,
) -> Response:
    del expires, signature  # declared for the document; read whole by `_link_fields`
    content = await _linked_content(request, services, file_id)
    return await attachment_response(content, conditions_of(request))


@router.head(LINK_PATH, include_in_schema=False)
async def download_by_link_head(request: Request, services: ServicesDep, file_id: str) -> Response:
    """What the GET answers, without the body (RFC 9110 9.3.2)."""
    content = await _linked_content(request, services, file_id)
    return await attachment_response(content, conditions_of(request), head=True)


async def _linked_content(request: Request, services: Services, file_id: str) -> AttachmentContent:
    link_file_id, link_expires, link_signature = _link_fields(request, file_id)
    return await services.open_linked_attachment(link_file_id, link_expires, link_signature)

"""Request bodies: streams for content, a size limit for bodies parsed in memory, and a
time limit between the chunks of any body."""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problem_types import UNSUPPORTED_MEDIA_TYPE_DETAIL
from api.problems import validation_problem
from api.routing import app_path

# JSON bodies are small documents ({"title": …}, {"ttl_seconds": …}); FastAPI reads them
# whole into memory before validating, so a larger one is refused with 413 as it arrives
MAX_PARSED_BODY_BYTES = 64 * 1024
ModelT = TypeVar('ModelT', bound=BaseModel)


def declared_length(request: Request) -> int | None:
    """`Content-Length` when the client sent one (lets a too-large body be refused unread)."""
    raw = request.headers.get('content-length')
    if raw is None:
        return None
    if not raw.isdigit():
        raise validation_problem(['header', 'content-length'], 'not a byte count')
    return int(raw)


# a stored media type: RFC 6838 bounds its type and subtype at 127 characters each
MAX_CONTENT_TYPE_CHARS = 255
_CONTROL = re.compile('[\x00-\x08\x0a-\x1f\x7f]')


def checked_content_type(value: str | None, location: list[str]) -> str | None:
    """A `Content-Type` to store with a file, or a validation problem: it is sent back
    as a header on every download, so it must be one a server can send. It is ASCII, as
    media types and their parameters are (RFC 6838, RFC 9110 8.3): header bytes reach the
    app decoded as Latin-1, so a UTF-8 `é` would be stored, and listed, as `Ã©`."""
    if value is not None and (
        len(value) > MAX_CONTENT_TYPE_CHARS or not value.isascii() or _CONTROL.search(value)
    ):
        raise validation_problem(
            location,
            f'at most {MAX_CONTENT_TYPE_CHARS} ASCII characters, no control characters',
        )
    return value


def body_stream(request: Request) -> AsyncIterator[bytes]:
    return _cut_short_is_invalid(request.stream())


async def _cut_short_is_invalid(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A body that ends before it is whole (the connection closed, or a framing the
    server could not read) is the client's mistake: `422`, never a `500`."""
    try:
        async for chunk in chunks:
            yield chunk
    except ClientDisconnect:
        raise validation_problem(['body'], 'the body ended before it was whole') from None


def _takes_json(route: APIRoute) -> bool:
    """A body model FastAPI parses, or a JSON body the route declares and parses itself
    (`parsed_json_body`)."""
    if route.body_field is not None:
        return True
    declared = (route.openapi_extra or {}).get('requestBody', {}).get('content', {})
    return 'application/json' in declared


class ParsedBodyLimit:
    """ASGI middleware: the body of a route that FastAPI parses whole is bounded.

    Those are the routes with a body model (JSON); content routes stream their body with
    limits of their own and have none, so they are left alone, and a route added later
    is covered without a change here. A larger body is `413 request_too_large`: refused
    unread when its `Content-Length` says so, else as soon as the count passes the limit
    (raised from `receive`, so FastAPI hands it to the problem handlers). A body that is
    not JSON (`Content-Type` other than `application/json` or `…+json`, or none) is
    `415 unsupported_media_type`; an empty one needs no type.
    """

    def __init__(self, app: ASGIApp, *, owner: FastAPI, max_bytes: int) -> None:
        self.app = app
        self._owner = owner
        self._max_bytes = max_bytes
        self._bounded: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def _is_bounded(self, scope: Scope) -> bool:
        if self._bounded is None:
            # the routes are complete once the first request arrives
            self._bounded = [
                (context.path_regex, frozenset(context.methods or ()))
                for context in iter_route_contexts(self._owner.routes)
                if isinstance(context.original_route, APIRoute)
                and _takes_json(context.original_route)
            ]
        path, method = app_path(scope), scope['method']
        return any(method in methods and regex.match(path) for regex, methods in self._bounded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http' or not self._is_bounded(scope):
            await self.app(scope, receive, send)
            return
        max_bytes = self._max_bytes
        headers = Headers(scope=scope)
        declared = headers.get('content-length')
        has_body = declared not in (None, '0') or 'transfer-encoding' in headers
        wrong_type = has_body and not _is_json(headers.get('content-type'))
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            if wrong_type:
                raise _not_json()
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(max_bytes)
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > max_bytes:
                    raise _too_large(max_bytes)
            return message

        await self.app(scope, bounded_receive, send)


async def parsed_json_body(request: Request, model: type[ModelT]) -> ModelT:
    """The JSON body of a route that reads it itself (after checks that must answer first),
    refused as FastAPI refuses a body model's: `422 validation_error` at `["body", …]`.
    The route declares the body in `openapi_extra`, which `ParsedBodyLimit` reads as a
    JSON body to bound (`413`, `415`)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{'type': 'missing', 'loc': ('body',), 'msg': 'Field required', 'input': None}]
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [{'type': 'json_invalid', 'loc': ('body', error.pos), 'msg': 'JSON decode error'}]
        ) from None
    except UnicodeDecodeError:
        raise RequestValidationError(
            [{'type': 'json_invalid', 'loc': ('body',), 'msg': 'The body is not valid JSON'}]
        ) from None
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise RequestValidationError(
            [{**issue, 'loc': ('body', *issue['loc'])} for issue in error.errors()]
        ) from None


def _is_json(content_type: str | None) -> bool:
    media_type = (content_type or '').partition(';')[0].strip().lower()
    return media_type == 'application/json' or (
        media_type.startswith('application/') and media_type.endswith('+json')
    )


def _not_json() -> StarletteHTTPException:
    # an HTTP exception: FastAPI lets it through its body parsing (anything else raised
    # while it reads the body becomes a 400), and the problem handlers name its code
    return StarletteHTTPException(415, UNSUPPORTED_MEDIA_TYPE_DETAIL)


def _too_large(max_bytes: int) -> StarletteHTTPException:
    return StarletteHTTPException(413, f'This request body may have at most {max_bytes} bytes.')


def install_parsed_body_limit(app: FastAPI, max_bytes: int = MAX_PARSED_BODY_BYTES) -> None:
    app.add_middleware(ParsedBodyLimit, owner=app, max_bytes=max_bytes)


def _stalled(seconds: float) -> StarletteHTTPException:
    # an HTTP exception, as `_too_large`: FastAPI lets it through its body parsing; the
    # connection is closed after the answer (RFC 9110 15.5.9)
    return StarletteHTTPException(
        408,
        f'No part of the request body arrived within {seconds:g} s.',
        headers={'Connection': 'close'},
    )


class BodyChunkTimeout:
    """ASGI middleware: the wait for each chunk of a request body is bounded.

    While a body is not yet whole, every `receive` waits at most `seconds` for the next
    message. One that does not come in time is `408 request_timeout` when the app is
    reading the body before answering: raised from `receive`, as the size limit's `413`,
    so an upload's staged content is removed on the way to the problem handlers and the
    answer closes the connection. When the answer has started (the app answered without
    reading, and what is left of the body is read after it, api/drain.py), the request
    ends as if the client had gone. Either way every later `receive` answers
    `http.disconnect` at once: the rest of the body is never waited for. Once the body
    is whole, `receive` is left unbounded: what it waits for then is the client going.
    """

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        seconds = self._seconds
        whole = timed_out = answering = False

        async def bounded_receive() -> Message:
            nonlocal whole, timed_out
            if whole:
                return await receive()
            if timed_out:
                return {'type': 'http.disconnect'}
            deadline = asyncio.timeout(seconds)
            try:
                async with deadline:
                    message = await receive()
            except TimeoutError:
                if not deadline.expired():
                    raise
                timed_out = True
                if answering:
                    return {'type': 'http.disconnect'}
                raise _stalled(seconds) from None
            if message['type'] != 'http.request' or not message.get('more_body', False):
                whole = True
            return message

        async def answering_send(message: Message) -> None:
            nonlocal answering
            answering = True
            await send(message)

        await self.app(scope, bounded_receive, answering_send)


def install_body_chunk_timeout(app: FastAPI, seconds: float) -> None:
    """Wrap the whole stack, the drain of unread bodies (api/drain.py) included, whose
    reads are bounded too."""
    build_stack = app.build_middleware_stack

    def build_bounded_stack() -> ASGIApp:
        return BodyChunkTimeout(build_stack(), seconds=seconds)

    app.build_middleware_stack = build_bounded_stack  # type: ignore[method-assign]

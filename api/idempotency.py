"""The `Idempotency-Key` header of the create routes and the history writes (ADR 015).

The routes read the header, fingerprint the request and say how to render their answer;
the use cases record that answer with the change. A recorded answer is sent back byte for
byte: the first request and every retry get the same status, body and headers.
"""

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from domain.idempotency import (
    IDEMPOTENCY_KEY_LIFETIME,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY_CHARS,
    RecordedResponse,
)
from usecase.idempotency import IdempotencyRequest

T = TypeVar('T')

HEADER = 'Idempotency-Key'
# the headers of a create's answer that a retry gets back; others are per response
REPLAYED_HEADERS = frozenset({'location', 'etag'})

_DESCRIPTION = (
    'Makes the request safe to retry. A retry with the same key and the same request '
    '(method, route, path parameters, body and, on a history write, `If-Match`) gets the '
    'first answer again (same status, body, `Location` and `ETag`) and changes nothing; '
    'the same key with another request is `422 idempotency_key_reused`. Keys are kept '
    f'{IDEMPOTENCY_KEY_LIFETIME.days * 24} hours, per user; 1-255 characters without '
    'control characters. Only successful answers are kept: a request that failed may be '
    'retried with its key.'
)


IdempotencyKeyDep = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_CHARS,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=_DESCRIPTION,
        examples=['7f3e1c52-order-42'],
    ),
]
"""The optional `Idempotency-Key` of a create route or a history write, validated."""


def request_fingerprint(request: Request, body: Mapping[str, Any]) -> str:
    """sha256 over method, route template, path parameters and the parsed `body`.

    The body is compared by meaning (JSON after parsing), not byte for byte; a streamed
    body's digest is mixed in by the use case.
    """
    route = request.scope.get('route')
    document = [
        request.method,
        getattr(route, 'path', request.url.path),
        dict(request.path_params),
        dict(body),
    ]
    encoded = json.dumps(document, sort_keys=True, separators=(',', ':'), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def idempotency_request(
    key: str | None,
    request: Request,
    body: Mapping[str, Any],
    respond: Callable[[T, Response], BaseModel],
) -> IdempotencyRequest[T] | None:
    """What a use case needs to record the answer `respond` renders; None without a key.

    `respond` is the route's own rendering (it sets status and headers on the response it
    is given and returns the body), so a first answer and its replays look alike.
    """
    if key is None:
        return None
    # as FastAPI answers: the route's status code unless `respond` sets another
    default_status = getattr(request.scope.get('route'), 'status_code', None) or 200

    def render(result: T) -> RecordedResponse:
        response = Response(status_code=default_status)
        model = respond(result, response)
        return recorded(response.status_code, model, response.headers)

    return IdempotencyRequest(key, request_fingerprint(request, body), render)


def recorded(status_code: int, model: BaseModel, headers: Mapping[str, str]) -> RecordedResponse:
    """The answer to keep: the JSON body as FastAPI would send it and the replayed headers."""
    body = JSONResponse(jsonable_encoder(model)).body
    kept = tuple(
        (name.lower(), value) for name, value in headers.items() if name.lower() in REPLAYED_HEADERS
    )
    return RecordedResponse(status_code=status_code, body=bytes(body).decode(), headers=kept)


def replayed(answer: RecordedResponse) -> Response:
    """The recorded answer as a response."""
    return Response(
        content=answer.body.encode(),
        status_code=answer.status_code,
        headers=dict(answer.headers),
        media_type='application/json',
    )

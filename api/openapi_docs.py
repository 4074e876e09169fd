"""What the OpenAPI document says beyond what FastAPI derives from the code.

Response headers, binary bodies and their media types, request examples, and
`finish_openapi`, the last pass over the generated document. Routers import the pieces;
nothing here changes how a request is served.
"""

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from api.problems import Problem, problem_responses

Json = dict[str, Any]

SHA256_ETAG = '"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"'
HISTORY_ETAG = '"3-1024"'
USER_ID_EXAMPLE = '9a1e2b3c-4d5e-4f60-8a7b-1c2d3e4f5a6b'
BINARY = {'type': 'string', 'format': 'binary'}


def header(description: str, example: str | int, kind: str = 'string') -> Json:
    return {'description': description, 'schema': {'type': kind}, 'example': example}


ETAG_OF_CONTENT = header('Strong entity tag: the sha256 of the content, quoted', SHA256_ETAG)
ETAG_OF_HISTORY = header('Strong entity tag `"<revision>-<size>"` of the history', HISTORY_ETAG)
CONTENT_LENGTH = header('Bytes in this body', 52113, 'integer')
ACCEPT_RANGES = header('Single byte ranges are served', 'bytes')
CONTENT_DISPOSITION = header(
    'Always `attachment`, with the stored name (RFC 6266/8187)',
    'attachment; filename="report.pdf"; filename*=UTF-8\'\'report.pdf',
)
NOSNIFF = header('Browsers must not guess another type', 'nosniff')
CONTENT_SECURITY_POLICY = header(
    'Stored content never runs as a page', "default-src 'none'; sandbox"
)
LOCATION = header('Path of the created resource', '/v1/chats/3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f')

_DOWNLOAD_HEADERS = {
    'ETag': ETAG_OF_CONTENT,
    'Accept-Ranges': ACCEPT_RANGES,
    'Content-Length': CONTENT_LENGTH,
    'Content-Disposition': CONTENT_DISPOSITION,
    'X-Content-Type-Options': NOSNIFF,
    'Content-Security-Policy': CONTENT_SECURITY_POLICY,
}
_ANY_BYTES = {'*/*': {'schema': BINARY}}

DOWNLOAD_RESPONSES: dict[int | str, Json] = {
    200: {
        'description': 'The bytes, with `Content-Type` as stored at upload '
        '(`application/octet-stream` when none was given)',
        'headers': _DOWNLOAD_HEADERS,
        'content': _ANY_BYTES,
    },
    206: {
        'description': 'The one range asked for by `Range: bytes=a-b` (also `a-` and `-n`)',
        'headers': {
            **_DOWNLOAD_HEADERS,
            'Content-Range': header('The range sent and the full size', 'bytes 0-1023/52113'),
            'Content-Length': header('Bytes in this range', 1024, 'integer'),
        },
        'content': _ANY_BYTES,
    },
    304: {
        'description': 'Not modified: `If-None-Match` names the current ETag; no body',
        'headers': {'ETag': ETAG_OF_CONTENT},
    },
    **problem_responses('precondition_failed'),
    416: {
        **problem_responses(416)[416],
        'headers': {
            'Content-Range': header(
                '`*` and the full size: no range of it was sent', 'bytes */52113'
            )
        },
    },
}

HISTORY_READ_RESPONSES: dict[int | str, Json] = {
    200: {
        'description': 'The whole history, UTF-8 Markdown',
        'headers': {
            'ETag': ETAG_OF_HISTORY,
            'Content-Length': CONTENT_LENGTH,
            'X-Content-Type-Options': NOSNIFF,
            'Content-Security-Policy': CONTENT_SECURITY_POLICY,
        },
        'content': {
            'text/markdown; charset=utf-8': {
                'schema': {'type': 'string'},
                'example': '# Q3 planning\n\n**user:** hello\n',
            }
        },
    },
    304: {
        'description': 'Not modified: `If-None-Match` names the current ETag; no body',
        'headers': {'ETag': ETAG_OF_HISTORY},
    },
    **problem_responses('precondition_failed'),
}

HISTORY_WRITTEN_HEADERS = {'ETag': ETAG_OF_HISTORY}

ZIP_RESPONSE: Json = {
    'description': 'A ZIP archive: `history.md` and every attachment under its own name',
    'headers': {
        'Content-Disposition': header(
            'Always `attachment`, named after the chat title',
            'attachment; filename="Q3 planning.zip"; filename*=UTF-8\'\'Q3%20planning.zip',
        ),
        'X-Content-Type-Options': NOSNIFF,
        'Content-Security-Policy': CONTENT_SECURITY_POLICY,
    },
    'content': {'application/zip': {'schema': BINARY}},
}

# request bodies: `openapi_examples` of `Body()` and the raw bodies of `openapi_extra`
CHAT_CREATE_EXAMPLES: Json = {
    'titled': {'summary': 'With a title', 'value': {'title': 'Q3 planning'}},
    'untitled': {'summary': 'Without a title (the body may also be empty)', 'value': {}},
}
CHAT_UPDATE_EXAMPLES: Json = {
    'rename': {'summary': 'New title', 'value': {'title': 'Q4 planning'}},
    'clear': {'summary': 'Remove the title', 'value': {'title': None}},
}
SANDBOX_START_EXAMPLES: Json = {
    'start': {'summary': 'Start a session for ten minutes', 'value': {'ttl_seconds': 600}},
    'renew': {
        'summary': 'Renew the active session',
        'value': {
            'ttl_seconds': 3600,
            'sandbox_session_id': '5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f',
        },
    },
}
LINK_REQUEST_EXAMPLES: Json = {
    'ten_minutes': {'summary': 'Valid for ten minutes', 'value': {'expires_in': 600}},
}

MULTIPART_BODY: Json = {
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
                        'file': BINARY,
                    },
                },
                'encoding': {'file': {'contentType': '*/*'}},
                'example': {'name': 'report.pdf', 'file': '<the bytes of report.pdf>'},
            }
        },
    }
}
RAW_BODY: Json = {
    'requestBody': {
        'required': True,
        'description': 'The content; its `Content-Type` is stored and served back',
        'content': {
            '*/*': {'schema': BINARY, 'example': 'id,amount\n1,9.50\n'},
        },
    }
}
# the two header parameters `api.dependencies.current_user_id` declares, as the finished
# document shows them; routes that read the caller with `caller_id` instead of the
# dependency declare them through `openapi_extra` (FastAPI appends listed parameters)
GATEWAY_HEADERS: Json = {
    'parameters': [
        {
            'name': 'x-user-id',
            'in': 'header',
            'required': True,
            'schema': {'type': 'string', 'format': 'uuid'},
            'description': 'The caller, as asserted by the trusted gateway (a UUID)',
            'example': USER_ID_EXAMPLE,
        },
        {
            'name': 'authorization',
            'in': 'header',
            'required': False,
            'schema': {
                'anyOf': [{'type': 'string'}, {'type': 'null'}],
                'description': '`Bearer <token>` when the service has a gateway token',
                'title': 'Authorization',
            },
            'description': '`Bearer <token>` when the service has a gateway token',
        },
    ]
}


def optional_header(name: str, description: str) -> Json:
    """An optional `str` header as FastAPI documents one, for routes that read their
    headers from the request itself (the hot read routes, ADR 019)."""
    title = '-'.join(part.capitalize() for part in name.split('-'))
    return {
        'name': name,
        'in': 'header',
        'required': False,
        'schema': {
            'anyOf': [{'type': 'string'}, {'type': 'null'}],
            'title': title,
            'description': description,
        },
        'description': description,
    }


_IF_NONE_MATCH_DESCRIPTION = 'The ETag you hold: `304` while it is current'
_IF_MATCH_DESCRIPTION = 'Answer only while this is the current ETag (`*`: any), else `412`'
# the conditional and range fields of a download (`/content` and signed links)
_DOWNLOAD_FIELDS = [
    optional_header('range', 'One range, e.g. `bytes=0-1023`'),
    optional_header('if-none-match', _IF_NONE_MATCH_DESCRIPTION),
    optional_header('if-match', _IF_MATCH_DESCRIPTION),
    optional_header(
        'if-range',
        'Serve the `Range` only while this is the current ETag, else the whole file (`200`)',
    ),
]
LINK_DOWNLOAD_HEADERS: Json = {'parameters': _DOWNLOAD_FIELDS}
DOWNLOAD_HEADERS: Json = {'parameters': [*_DOWNLOAD_FIELDS, *GATEWAY_HEADERS['parameters']]}
HISTORY_READ_HEADERS: Json = {
    'parameters': [
        optional_header('if-none-match', _IF_NONE_MATCH_DESCRIPTION),
        optional_header('if-match', _IF_MATCH_DESCRIPTION),
        *GATEWAY_HEADERS['parameters'],
    ]
}
HISTORY_BODY: Json = {
    'requestBody': {
        'required': True,
        'description': 'UTF-8 text; any `Content-Type`',
        'content': {
            'text/markdown': {
                'schema': {'type': 'string'},
                'example': '**user:** what changed in Q3?\n',
            }
        },
    }
}

# FastAPI's own validation schemas: every 422 here is a `Problem`
_UNUSED_SCHEMAS = ('HTTPValidationError', 'ValidationError')


def _add_schemas(components: Json, models: Sequence[type[BaseModel]]) -> None:
    """The models' schemas, and those they refer to, as components."""
    for model in models:
        found = model.model_json_schema(ref_template='#/components/schemas/{model}')
        for name, definition in found.pop('$defs', {}).items():
            components.setdefault(name, definition)
        components.setdefault(model.__name__, found)


def finish_openapi(
    schema: Json,
    never_invalid: frozenset[tuple[str, str]] = frozenset(),
    body_models: Sequence[type[BaseModel]] = (),
) -> Json:
    """The last pass: the shared `Problem` schema, our 422 instead of FastAPI's default, the
    408 of a stalled body on every operation with one, and `X-User-Id` described as what
    the gateway sends.

    `never_invalid`: the operations (path, method) none of whose parameters can fail to
    validate, which FastAPI gives a 422 all the same. `body_models`: the schemas of
    bodies that routes parse themselves and declare in `openapi_extra`."""
    components = schema.setdefault('components', {}).setdefault('schemas', {})
    _add_schemas(components, [Problem, *body_models])
    validation_problem = problem_responses('validation_error')[422]
    timeout_problem = problem_responses('request_timeout')[408]
    for path, operations in schema['paths'].items():
        for method, operation in operations.items():
            responses = operation['responses']
            if 'requestBody' in operation:
                # any body may stall: `api/body.py:BodyChunkTimeout` bounds every route's
                responses.setdefault('408', timeout_problem)
            if (path, method) in never_invalid:
                responses.pop('422', None)
            elif 'HTTPValidationError' in repr(responses.get('422')):
                # FastAPI's default 422 of a route that did not declare ours
                responses['422'] = validation_problem
            for parameter in operation.get('parameters', []):
                if parameter['in'] == 'header' and parameter['name'].lower() == 'x-user-id':
                    # optional in code only so that a missing one is our 401, not a 422
                    parameter['required'] = True
                    parameter['schema'] = {'type': 'string', 'format': 'uuid'}
                    parameter['example'] = USER_ID_EXAMPLE
    text = repr(schema['paths'])
    for name in _UNUSED_SCHEMAS:
        if f"'#/components/schemas/{name}'" not in text:
            components.pop(name, None)
    return schema

"""The OpenAPI document is complete enough for frontend developers, and committed fresh.

Walks every operation, so a route added without a summary, a description, tags, problem
responses or examples fails here.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.openapi_dump import DOCUMENT_PATH, REGENERATE, openapi_document, render
from api.problems import PROBLEM_MEDIA_TYPE

ROOT = Path(__file__).resolve().parents[2]
PROBLEM_REF = '#/components/schemas/Problem'
METHODS = {'get', 'put', 'post', 'patch', 'delete', 'head', 'options'}

Json = dict[str, Any]


@pytest.fixture(scope='module')
def document() -> Json:
    return openapi_document()


def operations(document: Json) -> Iterator[tuple[str, Json]]:
    for path, item in document['paths'].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f'{method.upper()} {path}', operation


def resolve(document: Json, schema: Json) -> Json:
    ref = schema.get('$ref')
    if ref is None:
        return schema
    found: Json = document
    for part in str(ref).removeprefix('#/').split('/'):
        found = found[part]
    return found


def has_example(document: Json, media: Json) -> bool:
    """An example on the media type, or on the (referenced) schema or one of its variants."""
    if 'example' in media or media.get('examples'):
        return True
    schema = media.get('schema', {})
    candidates = [schema, *schema.get('anyOf', []), *schema.get('oneOf', [])]
    return any(
        'example' in resolve(document, c) or resolve(document, c).get('examples')
        for c in candidates
    )


def test_committed_document_is_current(document: Json) -> None:
    committed = ROOT / DOCUMENT_PATH
    assert committed.exists(), f'{DOCUMENT_PATH} is missing; generate it with: {REGENERATE}'
    assert committed.read_text(encoding='utf-8') == render(document), (
        f'{DOCUMENT_PATH} is stale; regenerate it with: {REGENERATE}'
    )


def test_render_is_stable(document: Json) -> None:
    text = render(document)
    assert text.endswith('}\n')
    assert render(openapi_document()) == text


def test_every_operation_has_summary_description_and_declared_tags(document: Json) -> None:
    declared = {tag['name'] for tag in document.get('tags', []) if tag.get('description')}
    missing = [
        name
        for name, op in operations(document)
        if not op.get('summary')
        or not op.get('description')
        or not op.get('tags')
        or not set(op['tags']) <= declared
    ]
    assert not missing, f'summary, description or a declared tag missing: {missing}'


def test_every_response_says_what_it_answers(document: Json) -> None:
    generic = {'', 'Successful Response'}  # FastAPI's default for a 2xx without its own
    missing = [
        f'{name} {status}'
        for name, op in operations(document)
        for status, response in op['responses'].items()
        if response.get('description', '') in generic
    ]
    assert not missing, f'responses with no description of their own: {missing}'


def test_every_operation_documents_a_problem_response(document: Json) -> None:
    missing = [
        name
        for name, op in operations(document)
        if not any(
            int(status) >= 400
            and response.get('content', {}).get(PROBLEM_MEDIA_TYPE, {}).get('schema', {})
            == {'$ref': PROBLEM_REF}
            for status, response in op['responses'].items()
        )
    ]
    assert not missing, f'no problem response: {missing}'


def test_every_problem_response_is_a_problem_with_matching_examples(document: Json) -> None:
    wrong = []
    for name, op in operations(document):
        for status, response in op['responses'].items():
            if int(status) < 400:
                continue
            content = response.get('content', {})
            media = content.get(PROBLEM_MEDIA_TYPE, {})
            examples = media.get('examples', {})
            if (
                set(content) != {PROBLEM_MEDIA_TYPE}
                or media.get('schema') != {'$ref': PROBLEM_REF}
                or not examples
                or any(
                    e['value']['status'] != int(status) or e['value']['code'] != code
                    for code, e in examples.items()
                )
            ):
                wrong.append(f'{name} {status}')
    assert not wrong, f'problem responses without the Problem schema or a fitting example: {wrong}'


def test_every_request_body_has_an_example(document: Json) -> None:
    missing = [
        f'{name} {media_type}'
        for name, op in operations(document)
        for media_type, media in op.get('requestBody', {}).get('content', {}).items()
        if not has_example(document, media)
    ]
    assert not missing, f'request bodies without an example: {missing}'


def test_every_success_json_response_has_an_example(document: Json) -> None:
    missing = [
        f'{name} {status}'
        for name, op in operations(document)
        for status, response in op['responses'].items()
        if status.startswith('2')
        for media_type, media in response.get('content', {}).items()
        if 'json' in media_type and not has_example(document, media)
    ]
    assert not missing, f'2xx JSON responses without an example: {missing}'


def test_downloads_document_ranges_caching_and_their_headers(document: Json) -> None:
    downloads = [(name, op) for name, op in operations(document) if '206' in op['responses']]
    assert {name for name, _ in downloads} >= {
        'GET /v1/chats/{chat_id}/files/{file_id}/content',
        'GET /links/{file_id}',
    }
    for name, op in downloads:
        responses = op['responses']
        assert {'200', '206', '304', '416'} <= set(responses), name
        for status in ('200', '206'):
            headers = set(responses[status].get('headers', {}))
            assert {'ETag', 'Accept-Ranges', 'Content-Disposition', 'Content-Length'} <= headers
            assert responses[status]['content'], name
        assert 'Content-Range' in responses['206']['headers'], name
        assert 'Content-Range' in responses['416'].get('headers', {}), name
        assert 'ETag' in responses['304'].get('headers', {}), name
        assert 'content' not in responses['304'], name
        assert '412' in responses, name
        names = {p['name'] for p in op['parameters'] if p['in'] == 'header'}
        assert {'range', 'if-range', 'if-match', 'if-none-match'} <= names, name


def test_a_history_read_documents_the_headers_it_sends(document: Json) -> None:
    read = document['paths']['/v1/chats/{chat_id}/history']['get']['responses']
    assert {'ETag', 'Content-Length', 'X-Content-Type-Options', 'Content-Security-Policy'} <= set(
        read['200']['headers']
    )
    assert '412' in read


def test_a_signed_link_download_has_no_validation_error(document: Json) -> None:
    # its parameters are strings the route reads itself: a bad link is 403 invalid_link
    assert '422' not in document['paths']['/links/{file_id}']['get']['responses']


def test_the_416_title_is_rfc_9110s(document: Json) -> None:
    content = document['paths']['/v1/chats/{chat_id}/files/{file_id}/content']['get']
    example = content['responses']['416']['content'][PROBLEM_MEDIA_TYPE]['examples']
    assert example['range_not_satisfiable']['value']['title'] == 'Range Not Satisfiable'


def test_problem_examples_are_realistic(document: Json) -> None:
    op = document['paths']['/v1/chats/{chat_id}']['get']
    examples = op['responses']['404']['content'][PROBLEM_MEDIA_TYPE]['examples']
    chat = examples['chat_not_found']['value']
    assert chat['type'] == '/problems/chat-not-found'
    assert chat['title'] == 'Chat not found'
    assert chat['detail'].startswith('No chat with id ')
    assert chat['instance'].startswith('/v1/chats/')


def test_gateway_header_is_a_required_uuid(document: Json) -> None:
    op = document['paths']['/v1/chats']['get']
    user = next(p for p in op['parameters'] if p['name'].lower() == 'x-user-id')
    assert user['required'] is True
    assert user['schema'] == {'type': 'string', 'format': 'uuid'}

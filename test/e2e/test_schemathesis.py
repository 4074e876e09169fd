"""Schemathesis against a real server: the OpenAPI document tells the truth.

Every operation of the server's own `/openapi.json` is called with generated valid and
invalid input. Each response must be no 5xx, and conform to the document: a documented
status code, a documented content type, a body valid against the documented schema,
documented headers valid, and invalid input refused with a 4xx.

One user with a workspace, a chat and a file is set up first. Generated ids that are
valid UUIDs are replaced by that user's and those resources' ids, so that requests reach
the deep routes instead of stopping at `404`; invalid ones are kept and must be refused.
When a `DELETE` took one of them away, it is made again before the next case.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import requests
import schemathesis
from e2e_support import HTTP_TIMEOUT, ROOT, ServerProcess, user_headers
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
# bounded: ~30 operations x 2 modes x this many examples take 1.5-2 minutes
MAX_EXAMPLES = 20
LINK_SECRET = 'schemathesis-link-secret-0123456789abcdef'


@dataclass
class World:
    """One user's workspace, chat and file that generated requests are pointed at."""

    http: httpx.Client
    user_id: UUID
    chat_id: str = ''
    file_id: str = ''

    def ensure(self) -> None:
        """Make again whatever a generated `DELETE` removed."""
        assert self.http.put('/v1/workspace').status_code in {200, 201}
        if not self.chat_id or self.http.get(f'/v1/chats/{self.chat_id}').status_code != 200:
            response = self.http.post('/v1/chats', json={'title': 'fuzzed'})
            assert response.status_code == 201, response.text
            self.chat_id = response.json()['chat_id']
        file_path = f'/v1/chats/{self.chat_id}/files/{self.file_id}'
        if not self.file_id or self.http.get(file_path).status_code != 200:
            response = self.http.put(
                f'/v1/chats/{self.chat_id}/files/by-name/data.csv',
                content=b'id,amount\n1,9.50\n',
                headers={'Content-Type': 'text/csv'},
            )
            assert response.status_code in {200, 201}, response.text
            self.file_id = response.json()['file_id']


@pytest.fixture(scope='module')
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp('schemathesis')
    env = {'STORAGE_LINK_SECRET': LINK_SECRET}
    with ServerProcess(root / 'data', root, extra_env=env) as process:
        yield process


@pytest.fixture(scope='module')
def world(fuzz_server: ServerProcess) -> Iterator[World]:
    user_id = uuid4()
    with httpx.Client(
        base_url=fuzz_server.base_url, headers=user_headers(user_id), timeout=HTTP_TIMEOUT
    ) as http:
        made = World(http, user_id)
        made.ensure()
        yield made


@pytest.fixture(scope='module')
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


@pytest.fixture(scope='module')
def api_schema(fuzz_server: ServerProcess) -> schemathesis.BaseSchema:
    """The document as the running server serves it."""
    return schemathesis.openapi.from_url(f'{fuzz_server.base_url}/openapi.json')


def _is_uuid(value: object) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


def point_at_world(case: schemathesis.Case[Any], world: World) -> None:
    """Valid generated ids become the world's; invalid ones stay, to be refused."""
    if _is_uuid(case.headers.get('x-user-id')):  # case-insensitive
        case.headers['x-user-id'] = str(world.user_id)
    path = case.path_parameters
    if path is None:
        return
    if 'chat_id' in path and _is_uuid(path['chat_id']):
        path['chat_id'] = world.chat_id
    if 'file_id' in path and _is_uuid(path['file_id']):
        path['file_id'] = world.file_id


def _raw_body(operation: dict[str, Any]) -> bool:
    content = operation.get('requestBody', {}).get('content', {})
    return any('json' not in media_type for media_type in content)


def _cases() -> list[Any]:
    """(method, path, mode) of every operation of the committed document (kept current by
    test/api/test_openapi.py); each test takes its operation from the running server."""
    document = json.loads((ROOT / 'docs' / 'openapi.json').read_text(encoding='utf-8'))
    cases = []
    for path, item in document['paths'].items():
        for method, operation in item.items():
            cases.append(pytest.param(method, path, GenerationMode.POSITIVE))
            if operation.get('parameters') or operation.get('requestBody'):
                # with nothing to make invalid there are no negative cases
                cases.append(pytest.param(method, path, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(('method', 'path', 'mode'), _cases())
def test_operation_conforms_to_the_document(
    api_schema: schemathesis.BaseSchema,
    world: World,
    session: requests.Session,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    checks = CHECKS
    if _raw_body(operation.definition.raw):
        # a text or binary body is any bytes: a "schema-violating" one generated for it
        # is still bytes, which the server rightly takes (it checks UTF-8 etc. itself)
        checks = [check for check in CHECKS if check is not negative_data_rejection]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case[Any]) -> None:
        point_at_world(case, world)
        response = case.call_and_validate(session=session, checks=checks, timeout=30)
        if method == 'delete' and response.status_code == 204:
            world.ensure()

    call()

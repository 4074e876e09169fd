"""Large uploads the server refuses, many at once: every client reads its problem.

A refusal is decided while the client is still sending (by the declared length, after
the first megabyte, or before the body is read at all). A client that reads the answer
only once it has sent the whole request (http.client here, a browser's upload as well)
sees a network error when the server closes while bytes are still on their way: the
close resets the connection and the sending fails. The server reads the rest of the body
before it closes (api/drain.py), so that every client sends its body and reads its answer.
"""

import http.client
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from e2e_support import HOST, PROBLEM_MEDIA_TYPE, Caller, Json, ServerProcess

pytestmark = pytest.mark.e2e

BODY_BYTES = 8 * 1024 * 1024
BODY = os.urandom(BODY_BYTES)
CLIENTS = 6
ROUNDS = 3
STREAM_CHUNK_BYTES = 256 * 1024
TIMEOUT_SECONDS = 30


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (SQLite) whose file size limit lets the quota (1 MB) refuse 8 MiB."""
    root = tmp_path_factory.mktemp('refused-uploads')
    env = {'STORAGE_MAX_FILE_BYTES': str(4 * BODY_BYTES)}
    with ServerProcess(root / 'data', root, extra_env=env) as process:
        yield process


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: Json


def _body_chunks() -> Iterator[bytes]:
    for start in range(0, BODY_BYTES, STREAM_CHUNK_BYTES):
        yield BODY[start : start + STREAM_CHUNK_BYTES]


def _upload(server: ServerProcess, caller: Caller, chat_id: str, *, streamed: bool) -> Answer | str:
    """The answer to an 8 MiB raw upload sent whole before reading, or the error that
    replaced it."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=TIMEOUT_SECONDS)
    headers = {'X-User-Id': str(caller.user_id), 'Content-Type': 'application/octet-stream'}
    try:
        connection.request(
            'PUT',
            f'/v1/chats/{chat_id}/files/by-name/big.bin',
            body=_body_chunks() if streamed else BODY,
            headers=headers,
            encode_chunked=streamed,
        )
        response = connection.getresponse()
        return Answer(
            response.status, response.getheader('content-type'), json.loads(response.read())
        )
    except OSError as error:  # a reset, a broken pipe, a timeout
        return f'{type(error).__name__}: {error}'
    finally:
        connection.close()


def _client_rounds(server: ServerProcess, *, deleted: bool, streamed: bool) -> list[Answer | str]:
    """One user's uploads, `ROUNDS` in a row."""
    caller = Caller(server)
    try:
        chat_id = str(caller.workspace_and_chat()['chat_id'])
        if deleted:
            assert caller.http.delete(f'/v1/chats/{chat_id}').status_code == 204
        return [_upload(server, caller, chat_id, streamed=streamed) for _ in range(ROUNDS)]
    finally:
        caller.close()


CASES = {
    'over the quota by its length': (False, False, 413, 'workspace_quota_exceeded'),
    'over the quota while streamed': (False, True, 413, 'workspace_quota_exceeded'),
    'to a deleted chat': (True, False, 404, 'chat_not_found'),
}


@pytest.mark.parametrize(('deleted', 'streamed', 'status', 'code'), CASES.values(), ids=CASES)
def test_every_client_of_a_refused_upload_reads_its_problem(
    server: ServerProcess, *, deleted: bool, streamed: bool, status: int, code: str
) -> None:
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [
            pool.submit(_client_rounds, server, deleted=deleted, streamed=streamed)
            for _ in range(CLIENTS)
        ]
        answers = [answer for future in futures for answer in future.result(timeout=120)]

    failed = [answer for answer in answers if not isinstance(answer, Answer)]
    assert failed == [], f'{len(failed)} of {len(answers)} uploads had no answer'
    for answer in answers:
        assert isinstance(answer, Answer)
        assert (answer.status, answer.content_type) == (status, PROBLEM_MEDIA_TYPE)
        assert (answer.body['status'], answer.body['code']) == (status, code)
